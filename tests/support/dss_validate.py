"""The EU DSS validator harness of ``../shared/tools/dss-validate``, built once per machine.

Its README says to build a copy (the shared folder may be read-only) with ``mvn -q -B package``.
The copy is cached under ``~/.cache/signing-service/dss-validate/<key>/``, where the key is a
SHA-256 of the harness's ``pom.xml`` and sources: a changed harness is rebuilt, an unchanged one
never. Maven keeps DSS and its dependencies in ``~/.m2`` (downloaded from Maven Central on the
first build). Concurrent test processes wait for one build (a file lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "signing-service"
# The first build downloads DSS 6.4 and its dependencies (~60 MB) from Maven Central.
BUILD_TIMEOUT_SECONDS = 1800
RUN_TIMEOUT_SECONDS = 600


class HarnessBuildError(Exception):
    """Maven could not build the harness; the message ends with Maven's output."""


def source_key(tool_dir: Path) -> str:
    """SHA-256 (hex, 16 digits) over ``pom.xml`` and every file under ``src/``: paths and bytes."""
    digest = hashlib.sha256()
    files = [tool_dir / "pom.xml", *sorted(p for p in (tool_dir / "src").rglob("*") if p.is_file())]
    for path in files:
        relative = path.relative_to(tool_dir).as_posix().encode()
        data = path.read_bytes()
        digest.update(len(relative).to_bytes(4, "big") + relative)
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:16]


def harness_jar(tool_dir: Path, name: str = "dss-validate") -> Path:
    """``<name>.jar`` built from ``tool_dir`` (cached; built on first use). Also builds the
    veraPDF harness of ``tools/verapdf-check`` (``name="verapdf-check"``).

    Raises :class:`HarnessBuildError` when Maven fails (no network on the first build, say).
    """
    target = CACHE / name / source_key(tool_dir)
    jar = target / "target" / f"{name}.jar"
    if jar.is_file():
        return jar
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if jar.is_file():  # built by another process meanwhile
            return jar
        work = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
        try:
            copy = work / name
            shutil.copytree(tool_dir, copy)
            done = subprocess.run(
                ["mvn", "-q", "-B", "package"],
                cwd=copy,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_SECONDS,
                stdin=subprocess.DEVNULL,
            )
            if done.returncode != 0 or not (copy / "target" / f"{name}.jar").is_file():
                tail = (done.stdout + done.stderr)[-4000:]
                raise HarnessBuildError(f"mvn package failed ({done.returncode}):\n{tail}")
            if target.exists():
                shutil.rmtree(target)
            copy.rename(target)  # the jar finds its libraries in target/lib (manifest Class-Path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return jar


@dataclass(frozen=True)
class Validation:
    """One harness JSON line (see its README) and, with ``dump``, its detailed report (XML)."""

    report: dict[str, Any]
    detailed_xml: str | None


def validate(
    jar: Path,
    files: list[Path],
    *,
    trust: Path,
    offline: bool = False,
    dump: Path | None = None,
) -> list[Validation]:
    """Run the harness on ``files`` (in one JVM), one :class:`Validation` per file, in order."""
    command = ["java", "-jar", str(jar), *map(str, files), "--trust", str(trust)]
    if offline:
        command.append("--offline")
    if dump is not None:
        command += ["--dump", str(dump)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if len(lines) != len(files):
        raise AssertionError(
            f"dss-validate exit {done.returncode}, {len(lines)} reports for {len(files)} files:\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    out = []
    for path, line in zip(files, lines, strict=True):
        detailed = None
        if dump is not None:
            detailed = (dump / f"{path.name}.detailed.xml").read_text(encoding="utf-8")
        out.append(Validation(json.loads(line), detailed))
    return out
