"""Crash consistency and storage failures, with real processes: the service is killed
(SIGKILL) at each step of an upload, restarted, and ``signing-service storage reconcile``
must leave zero orphans; MinIO stopped mid-flight answers 503 and recovers without a restart."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from sqlalchemy import select

from signing_service.api.app import create_app
from signing_service.services.container import Services
from signing_service.store.models import Attachment, Document
from storage import open_store
from tests import conftest
from tests.conftest import make_settings, minio_or_skip
from tests.support.minio_server import MinioServer, find_binary
from tests.support.pdfs import make_pdf
from tests.support.server import REPO, ServiceProcess

DOSSIER = "000.00.12.H12-261127-0042"
STEPS = ["received", "screened", "object_written", "committed"]


@pytest.fixture(params=["filesystem", "minio"])
def service_env(
    request: pytest.FixtureRequest, tmp_path: Path, dev_pki: Any
) -> Iterator[dict[str, str]]:
    pki, port = dev_pki
    (tmp_path / "var").mkdir(exist_ok=True)  # commands refuse a missing one (red team 12 F10)
    env = {
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'metadata.db'}",
        "SIGNING_SERVICE_DEV_PKI_DIR": str(pki.directory),
        "SIGNING_SERVICE_DEV_PKI_PORT": str(port),
        "SIGNING_SERVICE_DEV_PKI_SERVE": "false",
        "SIGNING_SERVICE_DEV_SOFTHSM_DIR": str(conftest.SOFTHSM_DIR or tmp_path / "no-hsm"),
    }
    if request.param == "minio":
        server = minio_or_skip(request)
        env["SIGNING_SERVICE_STORAGE_URL"] = server.url(f"t-{uuid.uuid4().hex[:12]}")
    yield env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "signing_service.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def state(env: dict[str, str]) -> tuple[set[str], set[str], list[Attachment]]:
    """(object keys in the store, keys the database refers to, attachment rows)."""
    from signing_service.store.db import Database

    store = open_store(
        env.get("SIGNING_SERVICE_STORAGE_URL")
        or f"file://{Path(env['SIGNING_SERVICE_DATA_DIR']).resolve() / 'objects'}"
    )
    db = Database(env["SIGNING_SERVICE_DATABASE_URL"])
    with db.transaction() as session:
        rows = list(session.scalars(select(Attachment)).all())
        doc_keys = {k for k in session.scalars(select(Document.storage_key)) if k}
    db.dispose()
    refs = doc_keys | {r.storage_key for r in rows}
    return set(store.list()), refs, rows


@pytest.mark.parametrize("step", STEPS)
def test_killed_at_each_step_leaves_nothing_visible_after_reconcile(
    service_env: dict[str, str], tmp_path: Path, step: str
) -> None:
    server = ServiceProcess(service_env, tmp_path / "server.log")
    server.start(SIGNING_SERVICE_CRASH_AT=step)
    key = json.loads(
        (Path(service_env["SIGNING_SERVICE_DATA_DIR"]) / "dev-credentials.json").read_text()
    )["agencies"][0]["api_key"]
    auth = {"Authorization": f"Bearer {key}"}
    data = make_pdf(padding_bytes=3 * 1024 * 1024)
    try:
        with pytest.raises(requests.ConnectionError):
            requests.post(
                f"{server.url}/v1/dossiers/{DOSSIER}/attachments",
                headers=auth,
                files={"file": ("don.pdf", data)},
                data={"component": "application"},
                timeout=60,
            )
        assert server.wait_exit() == -signal.SIGKILL
    finally:
        server.stop()

    objects, refs, rows = state(service_env)
    if step == "committed":
        assert len(rows) == 1 and rows[0].storage_key in objects
    else:
        assert rows == []  # nothing a user can see
    if step == "object_written":
        assert objects - refs  # the orphan the crash left

    result = cli(service_env, "storage", "reconcile", "--min-age", "0", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    objects, refs, rows = state(service_env)
    assert objects == refs, "orphan objects remain after reconcile"
    spool = Path(service_env["SIGNING_SERVICE_DATA_DIR"]).resolve() / "tmp"
    assert not spool.exists() or list(spool.iterdir()) == []
    if step == "object_written":
        assert len(report["removed_objects"]) == 1
    if step == "received":
        assert len(report["removed_temporary"]) == 1  # the spooled upload

    # Restarted without the fault: what was committed is whole, and uploads work again.
    server.start()
    try:
        listed = requests.get(
            f"{server.url}/v1/dossiers/{DOSSIER}/attachments", headers=auth, timeout=30
        ).json()
        assert len(listed) == (1 if step == "committed" else 0)
        for item in listed:
            got = requests.get(server.url + item["content_url"], headers=auth, timeout=30)
            assert hashlib.sha256(got.content).hexdigest() == item["sha256"]
        again = requests.post(
            f"{server.url}/v1/dossiers/{DOSSIER}/attachments",
            headers=auth,
            files={"file": ("don.pdf", data)},
            data={"component": "application"},
            timeout=60,
        )
        assert again.status_code == 201, again.text
    finally:
        server.stop()
    result = cli(service_env, "audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr


def test_reconcile_removes_records_whose_object_is_missing(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    server = ServiceProcess(service_env, tmp_path / "server.log").start()
    key = json.loads(
        (Path(service_env["SIGNING_SERVICE_DATA_DIR"]) / "dev-credentials.json").read_text()
    )["agencies"][0]["api_key"]
    auth = {"Authorization": f"Bearer {key}"}
    try:
        body = requests.post(
            f"{server.url}/v1/dossiers/{DOSSIER}/attachments",
            headers=auth,
            files={"file": ("don.pdf", make_pdf())},
            data={"component": "other"},
            timeout=60,
        ).json()
    finally:
        server.stop()
    _, _, rows = state(service_env)
    store = open_store(
        service_env.get("SIGNING_SERVICE_STORAGE_URL")
        or f"file://{Path(service_env['SIGNING_SERVICE_DATA_DIR']).resolve() / 'objects'}"
    )
    store.delete(rows[0].storage_key, bypass_retention=True)  # lost behind the service's back
    dry = json.loads(
        cli(service_env, "storage", "reconcile", "--min-age", "0", "--dry-run", "--json").stdout
    )
    assert dry["missing_objects"] == [{"attachment_id": body["id"], "key": rows[0].storage_key}]
    plain = cli(service_env, "storage", "reconcile", "--min-age", "0", "--dry-run")
    # Every count line ends with its number, the leftover temporary files' too (finding 14).
    assert re.search(r"^  Tệp tạm còn sót: (\d+), sẽ xóa \1$", plain.stdout, re.MULTILINE), (
        plain.stdout
    )
    assert len(state(service_env)[2]) == 1  # dry run changed nothing
    result = cli(service_env, "storage", "reconcile", "--min-age", "0")
    assert result.returncode == 0
    assert "Bản ghi tệp đính kèm mất nội dung trong kho: 1" in result.stdout
    assert state(service_env)[2] == []


@pytest.fixture
def own_minio() -> Iterator[MinioServer]:
    """A MinIO of its own: this test stops and restarts it."""
    binary = find_binary()
    if binary is None:
        pytest.skip("MinIO binary not built (make test builds it)")
    server = MinioServer(binary).start()
    yield server
    server.stop()


def test_minio_down_503_then_recovers_without_restart(
    request: pytest.FixtureRequest, tmp_path: Path, dev_pki: Any, own_minio: MinioServer
) -> None:
    minio_or_skip(request)
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    services = Services.build(
        make_settings(
            tmp_path,
            f"sqlite:///{tmp_path / 'metadata.db'}",
            dev_pki,
            storage_url=own_minio.url(bucket),
            retry_after_seconds=20,
        )
    )
    creds = json.loads(services.settings.dev_credentials_file.read_text())
    auth = {"Authorization": f"Bearer {creds['agencies'][0]['api_key']}"}
    try:
        with TestClient(create_app(services), raise_server_exceptions=False) as client:

            def upload(name: str) -> Any:
                return client.post(
                    f"/v1/dossiers/{DOSSIER}/attachments",
                    headers=auth,
                    files={"file": (name, make_pdf(text=name))},
                    data={"component": "other"},
                )

            first = upload("truoc.pdf")
            assert first.status_code == 201
            own_minio.halt()
            down = upload("trong-luc-hong.pdf")
            assert (down.status_code, down.json()["code"]) == (503, "STORAGE_UNAVAILABLE")
            assert down.headers["Retry-After"] == "20"
            assert not down.json()["message"].isascii()
            content = client.get(first.json()["content_url"], headers=auth)
            assert (content.status_code, content.json()["code"]) == (503, "STORAGE_UNAVAILABLE")
            assert client.get("/readyz").status_code == 503
            with services.db.transaction() as session:
                assert len(session.scalars(select(Attachment)).all()) == 1  # nothing recorded
            spool = services.settings.upload_tmp_path
            assert list(spool.iterdir()) == []

            own_minio.start()  # same port, same drives; the service is not restarted
            assert client.get("/readyz").status_code == 200
            after = upload("sau.pdf")
            assert after.status_code == 201, after.text
            assert client.get(first.json()["content_url"], headers=auth).status_code == 200
            keys = set(services.store.list())
            with services.db.transaction() as session:
                refs = {a.storage_key for a in session.scalars(select(Attachment))}
            assert keys == refs  # the failed upload left no object
    finally:
        services.close()


def test_interrupted_upload_leaves_nothing_and_is_audited(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    import socket
    import time

    from signing_service.store.db import Database
    from signing_service.store.models import AuditEntry

    server = ServiceProcess(service_env, tmp_path / "server.log").start()
    key = json.loads(
        (Path(service_env["SIGNING_SERVICE_DATA_DIR"]) / "dev-credentials.json").read_text()
    )["agencies"][0]["api_key"]
    spool = Path(service_env["SIGNING_SERVICE_DATA_DIR"]).resolve() / "tmp"
    db = Database(service_env["SIGNING_SERVICE_DATABASE_URL"])
    try:
        boundary = "ranh-gioi-123"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="component"\r\n\r\n'
            f'application\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="lon.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
        ).encode()
        declared = len(head) + 8 * 1024 * 1024
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(
            (
                f"POST /v1/dossiers/{DOSSIER}/attachments HTTP/1.1\r\nHost: localhost\r\n"
                f"Authorization: Bearer {key}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {declared}\r\n\r\n"
            ).encode()
            + head
            + b"%PDF-1.7\n"
            + b"0" * (2 * 1024 * 1024)
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (spool.is_dir() and list(spool.iterdir())):
            time.sleep(0.05)
        assert list(spool.iterdir()), "the upload was being spooled"
        sock.close()  # the client goes away halfway

        def refused() -> list[dict[str, Any]]:
            with db.transaction() as session:
                entries = session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "attachment.refused")
                ).all()
            return [json.loads(e.details) for e in entries]

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not refused():
            time.sleep(0.1)
        assert [d["code"] for d in refused()] == ["UPLOAD_INCOMPLETE"]
        assert list(spool.iterdir()) == []
        objects, refs, rows = state(service_env)
        assert rows == [] and objects == refs
    finally:
        db.dispose()
        server.stop()
