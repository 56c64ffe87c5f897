"""``signing-service verify`` imports only what verifying needs (issue 13: the command's cost
is held at twice importing pyHanko's validation, bench/cli.py).

The process is run as a person runs it, with ``python -X importtime``, which names every module
the process imports (on stderr, one ``import time: … | module`` line each). What the service
needs for serving, storing or signing must not be among them: the web framework and server,
the ORM and migrations, the job queue. Without a development PKI (or in production) neither
certomancer nor werkzeug, which only answer for the development PKI. The verdict is checked too:
the command really verified.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from signing_service.pki.dev import DevPki
from tests.support.pdfs import make_pdf

REPO = Path(__file__).resolve().parent.parent

# Top-level packages the verify path must never import: serving (FastAPI, Starlette, uvicorn,
# multipart parsing), the ORM and its migrations, the PostgreSQL driver for a SQLite registry,
# the job queue, object storage.
NEVER = {
    "fastapi",
    "starlette",
    "uvicorn",
    "multipart",
    "python_multipart",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "procrastinate",
    "minio",
}
# Only to answer for the development PKI: absent when there is none.
DEV_PKI_ONLY = {"certomancer", "werkzeug"}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )


def _verify_imports(env: dict[str, str], pdf: Path) -> tuple[int, str, set[str]]:
    """(exit code, stdout, top-level packages imported) of ``verify pdf``."""
    done = _run(env, "-X", "importtime", "-m", "signing_service.cli", "verify", str(pdf))
    packages = {
        line.rsplit("|", 1)[1].strip().split(".", 1)[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    # The header line ("import time: self [us] | cumulative | imported package") is no module.
    packages.discard("imported package")
    return done.returncode, done.stdout, packages


@pytest.fixture
def signed(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> tuple[Path, dict[str, str]]:
    """A one-page PDF signed at B-T by ``signing-service sign`` into a development deployment
    (SQLite registry in its data directory, the session's dev PKI), and that deployment's
    environment."""
    pki, port = dev_pki
    (tmp_path / "var").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_SERVICE_")}
    env.update(
        SIGNING_SERVICE_DATA_DIR=str(tmp_path / "var"),
        SIGNING_SERVICE_DEV_PKI_DIR=str(pki.directory),
        SIGNING_SERVICE_DEV_PKI_PORT=str(port),
    )
    src, out = tmp_path / "in.pdf", tmp_path / "signed.pdf"
    src.write_bytes(make_pdf("Quyet dinh so 13/QD-UBND"))
    made = _run(
        env, "-m", "signing_service.cli", "sign", str(src), str(out), "--profile",
        "agency-a-seal", "--level", "B-T",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return out, env


def test_verify_with_the_deployment_imports_no_server_orm_or_queue(
    signed: tuple[Path, dict[str, str]],
) -> None:
    """The deployment's world: the dev PKI answered in-process, the registry read through
    sqlite3 alone (services/standalone.py)."""
    pdf, env = signed
    code, out, packages = _verify_imports(env, pdf)
    assert code == 0, out
    assert "Sổ đăng ký:" in out  # the registry was read, without SQLAlchemy
    assert "pyhanko" in packages and "signing_service" in packages
    assert packages & NEVER == set()
    # The dev PKI's OCSP responder answered in this process: its modules are expected here.
    assert packages >= DEV_PKI_ONLY


def test_verify_without_a_dev_pki_imports_no_certomancer(
    tmp_path: Path, signed: tuple[Path, dict[str, str]]
) -> None:
    """A data directory with neither a dev PKI nor a database: the signatures alone, against
    the pinned anchors (the dev root is not among them: INDETERMINATE)."""
    pdf, env = signed
    (tmp_path / "empty").mkdir()
    bare = {k: v for k, v in env.items() if not k.startswith("SIGNING_SERVICE_")}
    bare["SIGNING_SERVICE_DATA_DIR"] = str(tmp_path / "empty")
    code, out, packages = _verify_imports(bare, pdf)
    assert code == 2, out
    assert "NO_CERTIFICATE_CHAIN_FOUND" in out
    assert "pyhanko" in packages
    assert packages & (NEVER | DEV_PKI_ONLY) == set()


def test_verify_in_production_imports_no_dev_pki(
    tmp_path: Path, signed: tuple[Path, dict[str, str]]
) -> None:
    """Production reads no development PKI even where one was generated."""
    pdf, env = signed
    prod = {**env, "SIGNING_SERVICE_MODE": "production"}
    code, out, packages = _verify_imports(prod, pdf)
    assert code == 2, out
    assert packages & (NEVER | DEV_PKI_ONLY) == set()


def test_loading_pauses_the_collector_then_freezes_and_resumes() -> None:
    """``verify`` imports with the cyclic collector paused; afterwards what was loaded is
    frozen and collection is on again for the document's verification (cli._loading)."""
    import gc

    from signing_service.cli import _loading

    assert gc.isenabled()
    try:
        with _loading():
            assert not gc.isenabled()
            loaded = [[]]  # a container object created while loading
        assert gc.isenabled()
        # Frozen: in no generation the collector walks (nor at exit).
        assert not any(o is loaded for o in gc.get_objects())
        made_after = [[]]
        assert any(o is made_after for o in gc.get_objects())
        gc.disable()
        with _loading():
            pass
        assert not gc.isenabled()  # the caller's choice is kept
    finally:
        gc.enable()
        gc.unfreeze()
