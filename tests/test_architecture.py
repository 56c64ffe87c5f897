"""Dependency direction: the signing and verification cores import no web framework, ORM or
storage SDK (checked with import-linter, configured in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a dev dependency"
    result = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_vietnam_time_is_defined_once() -> None:
    """+07:00 lives in signing_service/timefmt.py; trust.py, counters.py and verification.py
    had their own copies. (appearance.py's copy belongs to the stamp's owners: issue 10.)"""
    defining = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "signing_service").rglob("*.py")
        if "timedelta(hours=7)" in path.read_text(encoding="utf-8")
    )
    assert defining == ["signing_service/signing/appearance.py", "signing_service/timefmt.py"]
