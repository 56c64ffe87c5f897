"""``signing-service backup`` / ``restore`` (issue 13, item 5): back up a deployment with
signed documents, registry entries, an attachment under retention and legal hold and an audit
seal; wipe it; restore; every stored document verifies as before (the service's verifier),
``audit verify`` passes, the service signs again. SQLite with the filesystem store and
PostgreSQL with a real MinIO (object lock). A damaged backup, a target that is not empty and
another audit key are refused before anything is written."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from signing_service.api.app import create_app
from signing_service.audit.seals import seal_head
from signing_service.services.container import Services
from signing_service.services.documents import read_content
from signing_service.services.verification import verify_document
from signing_service.settings import Settings
from signing_service.store.db import make_engine
from signing_service.store.models import Base, Document
from storage import open_store
from tests.conftest import make_settings, minio_or_skip
from tests.support.pdfs import make_pdf

REPO = Path(__file__).resolve().parent.parent
DOSSIER = "000.00.12.H12-261130-0001"


@pytest.fixture(params=["sqlite-filesystem", "postgresql-minio"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path, dev_pki: Any) -> Iterator[Settings]:
    if request.param.startswith("sqlite"):
        yield make_settings(tmp_path, f"sqlite:///{tmp_path / 'var' / 'metadata.db'}", dev_pki)
        return
    server = minio_or_skip(request)
    postgres = request.getfixturevalue("postgres")
    if postgres is None:
        pytest.skip("PostgreSQL binaries not installed (make test installs them)")
    yield make_settings(
        tmp_path,
        postgres.create_database(f"t_{uuid.uuid4().hex[:12]}"),
        dev_pki,
        storage_url=server.url(f"t-{uuid.uuid4().hex[:12]}"),
    )


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_SERVICE_")}
    env.update(
        {
            "SIGNING_SERVICE_DATA_DIR": str(settings.data_dir),
            "SIGNING_SERVICE_DATABASE_URL": settings.effective_database_url,
            "SIGNING_SERVICE_STORAGE_URL": settings.effective_storage_url,
            "SIGNING_SERVICE_DEV_PKI_DIR": str(settings.pki_dir),
            "SIGNING_SERVICE_DEV_PKI_PORT": str(settings.dev_pki_port),
            "SIGNING_SERVICE_DEV_SOFTHSM_DIR": str(settings.softhsm_dir),
        }
    )
    return env


def _cli(settings: Settings, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signing_service.cli", *args],
        env={**_env(settings), **extra},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _populate(services: Services) -> None:
    """Signed documents (B-T, B-LTA, one with a dossier and result code), a revoked registry
    entry, an attachment under retention and legal hold, an audit seal."""
    creds = json.loads(services.settings.dev_credentials_file.read_text())
    agency = creds["agencies"][0]
    headers = {"Authorization": f"Bearer {agency['api_key']}"}
    admin = {"Authorization": f"Bearer {agency['admin_api_key']}"}
    with TestClient(create_app(services), raise_server_exceptions=False) as api:
        for level, form in (
            ("B-T", {}),
            ("B-LTA", {"dossier_code": DOSSIER, "result_code": "auto"}),
            ("B-T", {}),
        ):
            signed = api.post(
                "/v1/signatures",
                headers=headers,
                data={"profile": "agency-a-seal", "level": level, **form},
                files={"file": ("a.pdf", make_pdf(), "application/pdf")},
            )
            assert signed.status_code == 201, signed.text
        public_id = signed.json()["registry"]["public_id"]
        revoked = api.post(
            f"/v1/registered-documents/{public_id}/revoke",
            headers=headers,
            json={"reason": "Cấp nhầm"},
        )
        assert revoked.status_code == 200, revoked.text
        uploaded = api.post(
            f"/v1/dossiers/{DOSSIER}/attachments",
            headers=headers,
            files={"file": ("don.pdf", make_pdf())},
            data={"component": "application"},
        )
        assert uploaded.status_code == 201, uploaded.text
        attachment = uploaded.json()["id"]
        held = api.put(
            f"/v1/attachments/{attachment}/legal-hold", headers=admin, json={"enabled": True}
        )
        assert held.status_code == 200, held.text
    assert services.dev_pki is not None and services.audit_key is not None
    seal = seal_head(
        services.db,
        services.audit_key,
        seal_dir=services.settings.audit_seals_path,
        tsa_url=services.dev_pki.tsa_url,
        trust=services.trust,
    )
    assert seal is not None


def _verdicts(services: Services) -> dict[str, tuple[str, str, str]]:
    """Every stored document: (its SHA-256, the verifier's verdict, the document's status)."""
    with services.db.transaction() as session:
        documents = session.scalars(select(Document).order_by(Document.id)).all()
    found = {}
    for doc in documents:
        data = read_content(services, doc)
        report = verify_document(services, data, actor="test")
        found[doc.id] = (doc.sha256, report["verdict"], report["status"]["code"])
    return found


def _wipe(settings: Settings) -> None:
    """Everything the deployment holds: the database's tables, every object (held and
    retained ones too: governance mode lets the operator bypass), the data directory."""
    engine = make_engine(settings.effective_database_url)
    with engine.begin() as connection:
        Base.metadata.drop_all(connection)
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    store = open_store(settings.effective_storage_url)
    for key in list(store.list()):
        store.set_legal_hold(key, False)
        store.delete(key, bypass_retention=True)
    assert list(store.list()) == []
    shutil.rmtree(settings.data_dir)


@pytest.mark.slow
def test_backup_wipe_restore(deployment: Settings, tmp_path: Path) -> None:
    services = Services.build(deployment)
    try:
        _populate(services)
        before = _verdicts(services)
    finally:
        services.close()
    verdicts = {v[1] for v in before.values()}
    assert "TOTAL_PASSED" in verdicts and len(before) >= 4
    assert any(v[2] == "REVOKED" for v in before.values())

    backup_dir = tmp_path / "sao-luu"
    made = _cli(deployment, "backup", str(backup_dir), "--json")
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    objects = sorted(open_store(deployment.effective_storage_url).list())
    assert summary["rows"]["documents"] == len(before) and summary["objects"] == len(objects)
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["files"]["audit_seals"]["entries"]
    assert oct(backup_dir.stat().st_mode & 0o777) == "0o700"
    # Development: the audit key is the file audit-dev.key, which the backup holds; the text
    # says so (it said the key was not in the backup), in the README's words.
    plain = _cli(deployment, "backup", str(tmp_path / "sao-luu-2"))
    assert plain.returncode == 0, plain.stderr
    assert "Khóa nhật ký kiểm toán" in plain.stdout
    assert "(tệp audit-dev.key) có trong bản sao lưu" in plain.stdout
    # Every folder inside too (README: 0700), not only the top one (new user 12 finding 14).
    folders = [p for p in backup_dir.rglob("*") if p.is_dir()]
    assert folders and {oct(p.stat().st_mode & 0o777) for p in folders} == {"0o700"}
    # Never the operator's secrets: neither the audit key itself nor a key store secret.
    assert "SIGNING_SERVICE_AUDIT_KEY" in " ".join(manifest["not_included"])
    # A second backup into the same (now full) directory is refused, and one inside the
    # deployment's own data.
    again = _cli(deployment, "backup", str(backup_dir))
    assert again.returncode == 5 and "đã có nội dung" in again.stderr
    inside = _cli(deployment, "backup", str(deployment.resolved_data_dir / "sao-luu"))
    assert inside.returncode == 5 and "nằm trong dữ liệu" in inside.stderr
    assert not (deployment.resolved_data_dir / "sao-luu").exists()

    _wipe(deployment)
    restored = _cli(deployment, "restore", str(backup_dir), "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["rows"] == summary["rows"]
    checked = _cli(deployment, "audit", "verify", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["ok"] and report["seals"] >= 1

    services = Services.build(deployment)
    try:
        after = _verdicts(services)
        # The object lock came back with the object.
        store = services.store
        assert sorted(store.list()) == objects
        held = [k for k in store.list() if store.lock_status(k).legal_hold]
        assert len(held) == 1
        # Sequences and the audit chain go on: the restored service signs again.
        creds = json.loads(deployment.dev_credentials_file.read_text())
        headers = {"Authorization": f"Bearer {creds['agencies'][0]['api_key']}"}
        with TestClient(create_app(services), raise_server_exceptions=False) as api:
            signed = api.post(
                "/v1/signatures",
                headers=headers,
                data={"profile": "agency-a-seal", "level": "B-T"},
                files={"file": ("b.pdf", make_pdf(), "application/pdf")},
            )
            assert signed.status_code == 201, signed.text
    finally:
        services.close()
    assert after == before
    assert _cli(deployment, "audit", "verify").returncode == 0

    # Into a deployment that is not empty: refused.
    full = _cli(deployment, "restore", str(backup_dir))
    assert full.returncode == 5 and "đã có dữ liệu" in full.stderr


def test_damaged_backup_is_refused(tmp_path: Path, dev_pki: Any) -> None:
    source = make_settings(tmp_path / "a", f"sqlite:///{tmp_path / 'a' / 'db.sqlite'}", dev_pki)
    (tmp_path / "a").mkdir()
    services = Services.build(source)
    try:
        creds = json.loads(source.dev_credentials_file.read_text())
        headers = {"Authorization": f"Bearer {creds['agencies'][0]['api_key']}"}
        with TestClient(create_app(services), raise_server_exceptions=False) as api:
            signed = api.post(
                "/v1/signatures",
                headers=headers,
                data={"profile": "agency-a-seal"},
                files={"file": ("a.pdf", make_pdf(), "application/pdf")},
            )
            assert signed.status_code == 201, signed.text
    finally:
        services.close()
    backup_dir = tmp_path / "sao-luu"
    assert _cli(source, "backup", str(backup_dir)).returncode == 0

    (tmp_path / "b").mkdir()
    target = make_settings(tmp_path / "b", f"sqlite:///{tmp_path / 'b' / 'db.sqlite'}", dev_pki)

    def refused(reason: str) -> None:
        result = _cli(target, "restore", str(backup_dir))
        assert result.returncode == 5, result.stdout + result.stderr
        assert reason in result.stderr and "Traceback" not in result.stderr
        # Checked before anything is written: no database, no data directory.
        assert not (tmp_path / "b" / "db.sqlite").exists()
        assert not target.data_dir.exists()

    [obj] = [p for p in (backup_dir / "objects").rglob("*") if p.is_file()][:1]
    original = obj.read_bytes()
    obj.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    refused("không khớp mã băm trong manifest")
    obj.write_bytes(original)

    table = backup_dir / "database" / "documents.jsonl"
    rows = table.read_bytes()
    table.write_bytes(rows + b"{}\n")
    refused("documents.jsonl không khớp mã băm")
    table.write_bytes(rows)

    manifest = backup_dir / "manifest.json"
    body = manifest.read_bytes()
    manifest.write_bytes(body.replace(b'"rows": 1', b'"rows": 2', 1))
    refused("manifest.json không khớp mã băm")
    manifest.write_bytes(body)

    digest = backup_dir / "manifest.json.sha256"
    kept = digest.read_bytes()
    digest.unlink()
    refused("không phải bản sao lưu hoàn chỉnh")
    digest.write_bytes(kept)

    # A mistyped backup path says so (new user 14 F7: "không phải bản sao lưu hoàn chỉnh").
    missing = _cli(target, "restore", str(tmp_path / "khong-co"))
    assert missing.returncode == 5, missing.stdout + missing.stderr
    assert f"không có thư mục sao lưu {tmp_path / 'khong-co'}" in missing.stderr
    assert not target.data_dir.exists()

    # The closing hint carries the data directory restored into: typed as printed it checks
    # that deployment (it checked the checkout's var/ without the variable).
    restored = _cli(target, "restore", str(backup_dir))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    hint = next(line for line in restored.stdout.splitlines() if line.startswith("Kiểm tra lại: "))
    command = hint.removeprefix("Kiểm tra lại: ").split(" (cùng ")[0]
    assert command == (
        f"SIGNING_SERVICE_DATA_DIR={target.resolved_data_dir} signing-service audit verify"
    )
    assert "SIGNING_SERVICE_DATABASE_URL" in hint  # set apart here: named, not printed
    assert target.effective_database_url not in hint
    # Typed as printed: the variable it names, the others (database URL) as at the restore.
    words = shlex.split(command)
    at = words.index("signing-service")
    assignments, args = words[:at], words[at + 1 :]
    env = {k: v for k, v in _env(target).items() if k != "SIGNING_SERVICE_DATA_DIR"}
    env.update(a.split("=", 1) for a in assignments)
    checked = subprocess.run(
        [sys.executable, "-m", "signing_service.cli", *args, "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["ok"]


def test_backup_and_restore_help_say_what_goes_where() -> None:
    """The runbook sends the operator to `backup --help` and `restore --help` (new user 14
    F7: both were empty but for the usage line)."""
    from signing_service.cli import build_parser

    def help_text(command: str) -> str:
        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
            command
        ]
        return sub.format_help()

    restore = help_text("restore")
    for said in (
        "SIGNING_SERVICE_DATA_DIR",
        "SIGNING_SERVICE_DATABASE_URL",
        "SIGNING_SERVICE_STORAGE_URL",
        "Đích phải RỖNG",
        "audit verify",
        "in bản tóm tắt dạng JSON",
        "thư mục của bản sao lưu",
    ):
        assert said in restore, said
    backup = help_text("backup")
    for said in (
        "SIGNING_SERVICE_KEY_STORE_SECRET",
        "SIGNING_SERVICE_AUDIT_KEY",
        "mới hoặc rỗng",
        "in bản tóm tắt dạng JSON",
    ):
        assert said in backup, said


def test_production_restore_needs_the_backups_audit_key(tmp_path: Path) -> None:
    """Production: the audit secret is not in the backup; the restore refuses another one."""
    key_a, key_b = "a" * 40, "b" * 40
    common = {
        "SIGNING_SERVICE_MODE": "production",
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "prod"),
        "SIGNING_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
        "SIGNING_SERVICE_STORAGE_URL": f"file://{tmp_path / 'objects'}",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_SERVICE_")}

    def cli(*args: str, key: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "signing_service.cli", *args],
            env={**env, **common, "SIGNING_SERVICE_AUDIT_KEY": key, **extra},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert cli("migrate", key=key_a).returncode == 0
    assert cli("agency", "add", "000.00.12.H12", "Sở Tư pháp", key=key_a).returncode == 0
    made = cli("backup", str(tmp_path / "sao-luu"), key=key_a)
    assert made.returncode == 0, made.stderr
    assert key_a not in "".join(
        p.read_text(errors="replace") for p in (tmp_path / "sao-luu").rglob("*") if p.is_file()
    )
    fresh = {
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "prod2"),
        "SIGNING_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'prod2.db'}",
        "SIGNING_SERVICE_STORAGE_URL": f"file://{tmp_path / 'objects2'}",
    }
    wrong = cli("restore", str(tmp_path / "sao-luu"), key=key_b, **fresh)
    assert wrong.returncode == 5 and "không phải khóa của bản sao lưu" in wrong.stderr
    assert not (tmp_path / "prod2.db").exists()
    right = cli("restore", str(tmp_path / "sao-luu"), key=key_a, **fresh)
    assert right.returncode == 0, right.stderr
    listed = cli("audit", "verify", key=key_a, **fresh)
    assert listed.returncode == 0, listed.stderr


def _reseal_digests(backup_dir: Path, edited: dict[str, bytes]) -> None:
    """What the red team's scripts did (F7): rewrite table files, then recompute every plain
    SHA-256 the backup carries (the file's entry in the manifest, the manifest's digest)."""
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    for table, data in edited.items():
        (backup_dir / "database" / f"{table}.jsonl").write_bytes(data)
        entry = manifest["database"][table]
        entry["rows"] = data.count(b"\n")
        entry["bytes"] = len(data)
        entry["sha256"] = hashlib.sha256(data).hexdigest()
    body = json.dumps(manifest, indent=1).encode()
    (backup_dir / "manifest.json").write_bytes(body)
    (backup_dir / "manifest.json.sha256").write_text(
        f"{hashlib.sha256(body).hexdigest()}  manifest.json\n"
    )


def test_edited_backup_is_refused_by_its_mac(tmp_path: Path) -> None:
    """Red team 12 F7: whoever can write the backup (not holding the audit secret) plants an
    operator API key, or cuts the audit log's tail, and recomputes the SHA-256s: the restore
    refuses (the manifest's HMAC under the audit key) before writing anything."""
    key = "k" * 40
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_SERVICE_")}
    env |= {"SIGNING_SERVICE_MODE": "production", "SIGNING_SERVICE_AUDIT_KEY": key}

    def cli(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        where = {
            "SIGNING_SERVICE_DATA_DIR": str(tmp_path / name),
            "SIGNING_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / f'{name}.db'}",
            "SIGNING_SERVICE_STORAGE_URL": f"file://{tmp_path / f'{name}-objects'}",
        }
        return subprocess.run(
            [sys.executable, "-m", "signing_service.cli", *args],
            env={**env, **where},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert cli("src", "migrate").returncode == 0
    for code in ("000.00.12.H12", "000.00.13.H13"):
        assert cli("src", "agency", "add", code, "Sở Tư pháp").returncode == 0
    original = tmp_path / "sao-luu"
    made = cli("src", "backup", str(original))
    assert made.returncode == 0, made.stderr
    sealed = json.loads((original / "manifest.json.mac").read_text())
    assert sealed["algorithm"] == "HMAC-SHA-256" and key not in json.dumps(sealed)

    planted = tmp_path / "planted"
    shutil.copytree(original, planted)
    rows = (planted / "database" / "api_clients.jsonl").read_bytes()
    row = {
        "agency_id": None,
        "created_at": "2026-11-30T05:30:00",
        "expires_at": None,
        "id": 99,
        "key_hash": hashlib.sha256(b"attackerSecret123").hexdigest(),
        "key_id": "0badc0de0badc0de",
        "name": "maintenance",
        "replaced_by": None,
        "revoked_at": None,
        "role": "operator",
    }
    _reseal_digests(planted, {"api_clients": rows + json.dumps(row).encode() + b"\n"})

    cut = tmp_path / "cut"
    shutil.copytree(original, cut)
    entries = [
        json.loads(x) for x in (cut / "database" / "audit_log.jsonl").read_text().splitlines()
    ]
    assert len(entries) >= 3
    keep = entries[:-2]
    head = json.loads((cut / "database" / "audit_head.jsonl").read_text())
    head.update(hash=keep[-1]["hash"], mac=keep[-1]["mac"], seq=keep[-1]["seq"])
    _reseal_digests(
        cut,
        {
            "audit_log": b"".join(json.dumps(e).encode() + b"\n" for e in keep),
            "audit_head": json.dumps(head).encode() + b"\n",
        },
    )

    unsealed = tmp_path / "unsealed"
    shutil.copytree(original, unsealed)
    (unsealed / "manifest.json.mac").unlink()

    for name, edited, reason in (
        ("t1", planted, "không khớp mã xác thực"),
        ("t2", cut, "không khớp mã xác thực"),
        ("t3", unsealed, "thiếu mã xác thực"),
    ):
        result = cli(name, "restore", str(edited))
        assert result.returncode == 5, result.stdout + result.stderr
        assert reason in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / f"{name}.db").exists() and not (tmp_path / name).exists()
    # The untouched backup still restores, and its log verifies.
    assert cli("t4", "restore", str(original)).returncode == 0
    assert cli("t4", "audit", "verify").returncode == 0
