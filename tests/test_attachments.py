"""Dossier attachments through the API, against the filesystem backend with SQLite and a real
MinIO (four erasure-coded drives, object lock) with PostgreSQL; ClamAV is a real clamd."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from signing_service.api.app import create_app
from signing_service.services.container import Services
from signing_service.store.models import AuditEntry
from tests.conftest import make_settings, minio_or_skip
from tests.support.clamd import EICAR, Clamd
from tests.support.files import HOSTILE, VALID, pdf_with
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot

DOSSIER_A = "000.00.12.H12-261127-0001"
DOSSIER_B = "000.00.31.H26-261127-0001"


class Env:
    def __init__(self, services: Services, client: TestClient) -> None:
        self.services = services
        self.client = client
        creds = json.loads(services.settings.dev_credentials_file.read_text())
        self.agencies = creds["agencies"]

    def auth(self, index: int = 0, admin: bool = False) -> dict[str, str]:
        key = self.agencies[index]["admin_api_key" if admin else "api_key"]
        return {"Authorization": f"Bearer {key}"}

    def upload(
        self,
        name: str,
        data: bytes,
        component: str = "application",
        dossier: str = DOSSIER_A,
        index: int = 0,
        headers: dict[str, str] | None = None,
    ) -> Any:
        return self.client.post(
            f"/v1/dossiers/{dossier}/attachments",
            headers={**self.auth(index), **(headers or {})},
            files={"file": (name, data)},
            data={"component": component},
        )

    def audit_actions(self) -> list[tuple[str, dict[str, Any]]]:
        with self.services.db.transaction() as session:
            rows = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        return [(r.action, json.loads(r.details)) for r in rows]


EnvFactory = Callable[..., Env]


@pytest.fixture(params=["filesystem-sqlite", "minio-postgresql"])
def make_env(request: pytest.FixtureRequest, tmp_path: Path, dev_pki: Any) -> Iterator[EnvFactory]:
    built: list[tuple[Services, TestClient]] = []
    storage_url = None
    if request.param.startswith("minio"):
        server = minio_or_skip(request)
        storage_url = server.url(f"t-{uuid.uuid4().hex[:12]}")
        postgres = request.getfixturevalue("postgres")
        if postgres is None:
            pytest.skip("PostgreSQL binaries not installed (make test installs them)")
        database_url = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    else:
        database_url = f"sqlite:///{tmp_path / 'metadata.db'}"

    def factory(**overrides: Any) -> Env:
        if storage_url:
            overrides.setdefault("storage_url", storage_url)
        services = Services.build(make_settings(tmp_path, database_url, dev_pki, **overrides))
        client = TestClient(create_app(services), raise_server_exceptions=False)
        client.__enter__()
        built.append((services, client))
        return Env(services, client)

    yield factory
    for services, client in built:
        client.__exit__(None, None, None)
        services.close()


@pytest.fixture
def env(make_env: EnvFactory) -> Env:
    return make_env()


@pytest.mark.parametrize(("name", "data", "media_type"), VALID, ids=[v[0] for v in VALID])
def test_valid_files_round_trip_byte_for_byte(
    env: Env, name: str, data: bytes, media_type: str
) -> None:
    r = env.upload(name, data)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert (body["size"], body["media_type"], body["filename"]) == (len(data), media_type, name)
    assert body["dossier_code"] == DOSSIER_A and body["component"] == "application"
    assert body["retain_until"] is not None and not body["legal_hold"]
    assert r.headers["Location"] == f"/v1/attachments/{body['id']}"
    got = env.client.get(body["content_url"], headers=env.auth())
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["X-Content-SHA256"] == body["sha256"]
    meta = env.client.get(f"/v1/attachments/{body['id']}", headers=env.auth()).json()
    assert meta == body
    listed = env.client.get(f"/v1/dossiers/{DOSSIER_A}/attachments", headers=env.auth()).json()
    assert [a["id"] for a in listed] == [body["id"]]
    assert ("attachment.stored", body["sha256"]) in [
        (a, d.get("sha256")) for a, d in env.audit_actions()
    ]


@pytest.mark.parametrize(("name", "data", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_files_refused_nothing_kept_audited(
    env: Env, name: str, data: bytes, code: str
) -> None:
    before = snapshot(env.services)
    r = env.upload(name, data)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code
    assert not r.json()["message"].isascii()  # Vietnamese
    assert_nothing_written(before, env.services)
    action, details = env.audit_actions()[-1]
    assert (action, details["code"]) == ("attachment.refused", code)
    assert details["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("dossier", "component", "code", "status"),
    [
        ("000.00.12.H12-261127-001", "application", "INVALID_DOSSIER_CODE", 422),
        ("000.00.12.H12-261327-0001", "application", "INVALID_DOSSIER_CODE", 422),
        (DOSSIER_B, "application", "INVALID_DOSSIER_CODE", 422),  # another agency's dossier
        # A path with a control character names nothing (404 before routing, test_edge.py).
        ("000.00.12.H12-261127-000١", "application", "INVALID_DOSSIER_CODE", 422),  # Arabic 1
        (DOSSIER_A, "passport-photo", "INVALID_COMPONENT", 422),
        (DOSSIER_A, "application\x00", "INVALID_COMPONENT", 422),
        (DOSSIER_A, "c" * 5000, "INVALID_REQUEST", 422),
        (DOSSIER_A, "", "INVALID_COMPONENT", 422),
    ],
)
def test_bad_dossier_code_or_component(
    env: Env, dossier: str, component: str, code: str, status: int
) -> None:
    before = snapshot(env.services)
    r = env.upload("don.pdf", make_pdf(), component=component, dossier=dossier)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert_nothing_written(before, env.services)
    assert env.audit_actions()[-1][1]["code"] == code


def test_missing_dossier_code(env: Env) -> None:
    before = snapshot(env.services)
    r = env.upload("don.pdf", make_pdf(), dossier="")
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_DOSSIER_CODE")
    assert not r.json()["message"].isascii()
    assert_nothing_written(before, env.services)
    assert env.audit_actions()[-1] == ("attachment.refused", {"code": "INVALID_DOSSIER_CODE"})


def test_missing_fields(env: Env) -> None:
    before = snapshot(env.services)
    r = env.client.post(
        f"/v1/dossiers/{DOSSIER_A}/attachments",
        headers=env.auth(),
        data={"component": "application"},
        files={"other": ("x.pdf", make_pdf())},
    )
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_REQUEST")
    assert r.json()["details"]["fields"] == ["file"]
    r = env.client.post(
        f"/v1/dossiers/{DOSSIER_A}/attachments", headers=env.auth(), content=b"not multipart"
    )
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_REQUEST")
    assert_nothing_written(before, env.services)


def test_file_over_the_limit(make_env: EnvFactory) -> None:
    env = make_env(max_attachment_bytes=100_000)
    before = snapshot(env.services)
    r = env.upload("big.pdf", make_pdf(pages=1) + b"%" + b"x" * 200_000 + b"\n%%EOF\n")
    assert (r.status_code, r.json()["code"]) == (413, "FILE_TOO_LARGE")
    assert_nothing_written(before, env.services)
    assert env.audit_actions()[-1][1]["code"] == "FILE_TOO_LARGE"


def test_unauthenticated_upload_is_refused(env: Env) -> None:
    r = env.client.post(
        f"/v1/dossiers/{DOSSIER_A}/attachments",
        files={"file": ("a.pdf", make_pdf())},
        data={"component": "application"},
    )
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHENTICATED")


def test_other_agency_gets_404_and_it_is_audited(env: Env) -> None:
    body = env.upload("don.pdf", make_pdf()).json()
    for path in (f"/v1/attachments/{body['id']}", f"/v1/attachments/{body['id']}/content"):
        r = env.client.get(path, headers=env.auth(1))
        assert (r.status_code, r.json()["code"]) == (404, "ATTACHMENT_NOT_FOUND")
    r = env.client.delete(f"/v1/attachments/{body['id']}", headers=env.auth(1))
    assert r.status_code == 404
    listed = env.client.get(f"/v1/dossiers/{DOSSIER_B}/attachments", headers=env.auth(1))
    assert listed.json() == []
    # The other agency cannot even list agency A's dossier.
    r = env.client.get(f"/v1/dossiers/{DOSSIER_A}/attachments", headers=env.auth(1))
    assert r.json()["code"] == "INVALID_DOSSIER_CODE"
    actions = env.audit_actions()
    not_found = [d for a, d in actions if a == "attachment.not_found"]
    assert len(not_found) == 3 and not_found[0]["attachment_id"] == body["id"]
    assert actions[-1] == (
        "attachment.refused",
        {"code": "INVALID_DOSSIER_CODE", "dossier_code": DOSSIER_A},
    )
    # Still there for its owner.
    assert env.client.get(body["content_url"], headers=env.auth()).status_code == 200


def test_idempotency_key(env: Env) -> None:
    data = make_pdf()
    first = env.upload("don.pdf", data, headers={"Idempotency-Key": "mc-2026-000123"})
    assert first.status_code == 201
    again = env.upload("don.pdf", data, headers={"Idempotency-Key": "mc-2026-000123"})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    before = snapshot(env.services)
    other = env.upload("khac.pdf", make_pdf(pages=2), headers={"Idempotency-Key": "mc-2026-000123"})
    assert (other.status_code, other.json()["code"]) == (409, "IDEMPOTENCY_KEY_CONFLICT")
    bad = env.upload("don.pdf", data, headers={"Idempotency-Key": "x" * 200})
    assert (bad.status_code, bad.json()["code"]) == (422, "INVALID_IDEMPOTENCY_KEY")
    assert_nothing_written(before, env.services)
    # Keys are per agency: agency B may use the same key for its own upload.
    b = env.upload(
        "don.pdf", data, dossier=DOSSIER_B, index=1, headers={"Idempotency-Key": "mc-2026-000123"}
    )
    assert b.status_code == 201 and b.json()["id"] != first.json()["id"]


def test_eicar_is_quarantined(make_env: EnvFactory, clamd: Clamd) -> None:
    env = make_env(clamd_address=clamd.socket)
    before = snapshot(env.services)
    infected = make_pdf(extra_stream=EICAR)
    r = env.upload("nhiem.pdf", infected)
    assert (r.status_code, r.json()["code"]) == (422, "MALWARE_FOUND")
    assert "Eicar" in r.json()["details"]["signature"]
    assert_nothing_written(before, env.services)
    action, details = env.audit_actions()[-1]
    assert (action, details["code"]) == ("attachment.refused", "MALWARE_FOUND")
    quarantined = env.services.settings.quarantine_path / details["quarantined_as"]
    assert quarantined.read_bytes() == infected
    assert oct(quarantined.stat().st_mode & 0o777) == "0o600"
    clean = env.upload("sach.pdf", make_pdf())
    assert clean.status_code == 201
    assert clean.json()["screening"]["malware_scan"] == "clean"


def test_clamd_down_refuses_with_503(make_env: EnvFactory, tmp_path: Path) -> None:
    env = make_env(clamd_address=str(tmp_path / "no-clamd.sock"))
    before = snapshot(env.services)
    r = env.upload("don.pdf", make_pdf())
    assert (r.status_code, r.json()["code"]) == (503, "MALWARE_SCAN_UNAVAILABLE")
    assert r.headers["Retry-After"]
    assert_nothing_written(before, env.services)


def test_sanitized_copy_beside_the_original(make_env: EnvFactory) -> None:
    env = make_env(pdf_active_content="sanitize")
    data = pdf_with("javascript")
    body = env.upload("js.pdf", data).json()
    assert body["sanitized"] and "JavaScript" in body["screening"]["active_content"]
    original = env.client.get(body["content_url"], headers=env.auth())
    assert original.content == data  # untouched
    clean = env.client.get(body["content_url"] + "?variant=sanitized", headers=env.auth())
    assert clean.status_code == 200
    assert hashlib.sha256(clean.content).hexdigest() == body["sanitized_sha256"]
    from signing_service.screening import screen

    assert screen(clean.content, "clean.pdf").accepted


def test_retention_and_legal_hold(make_env: EnvFactory) -> None:
    env = make_env(attachment_components={"application": 30, "draft": 0})
    kept = env.upload("don.pdf", make_pdf()).json()
    r = env.client.delete(f"/v1/attachments/{kept['id']}", headers=env.auth())
    assert (r.status_code, r.json()["code"]) == (409, "ATTACHMENT_RETAINED")
    # The store refuses too, not only the service.
    from storage import ObjectLocked

    row_key = f"attachments/{env.agencies[0]['code']}"
    [key] = [k for k in env.services.store.list(row_key)]
    with pytest.raises(ObjectLocked):
        env.services.store.delete(key)

    draft = env.upload("nhap.pdf", make_pdf(pages=2), component="draft").json()
    assert draft["retain_until"] is None
    hold_url = f"/v1/attachments/{draft['id']}/legal-hold"
    r = env.client.put(hold_url, json={"enabled": True}, headers=env.auth())
    assert r.status_code == 403  # legal hold is an administrator's decision
    r = env.client.put(hold_url, json={"enabled": True}, headers=env.auth(admin=True))
    assert r.status_code == 200 and r.json()["legal_hold"]
    r = env.client.delete(f"/v1/attachments/{draft['id']}", headers=env.auth())
    assert (r.status_code, r.json()["code"]) == (409, "ATTACHMENT_RETAINED")
    r = env.client.put(hold_url, json={"enabled": False}, headers=env.auth(admin=True))
    assert r.status_code == 200 and not r.json()["legal_hold"]
    r = env.client.delete(f"/v1/attachments/{draft['id']}", headers=env.auth())
    assert r.status_code == 204
    assert env.client.get(draft["content_url"], headers=env.auth()).status_code == 404
    assert len(list(env.services.store.list("attachments/"))) == 1
    actions = [a for a, _ in env.audit_actions()]
    assert "attachment.legal_hold_on" in actions and "attachment.deleted" in actions


def test_corrupted_object_is_reported_not_served(env: Env) -> None:
    data = make_pdf()
    body = env.upload("don.pdf", data).json()
    [key] = list(env.services.store.list("attachments/"))
    # Replace the stored bytes behind the service's back (same size, one byte changed).
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0x01
    env.services.store.delete(key, bypass_retention=True)
    env.services.store.put(key, bytes(tampered))
    r = env.client.get(body["content_url"], headers=env.auth())
    assert (r.status_code, r.json()["code"]) == (500, "STORAGE_INTEGRITY_ERROR")
    assert env.audit_actions()[-1][0] == "attachment.integrity_error"


def test_large_corrupted_object_download_is_cut_short(env: Env) -> None:
    size = 12 * 1024 * 1024
    data = make_pdf(extra_stream=b"A" * size)
    body = env.upload("lon.pdf", data).json()
    [key] = list(env.services.store.list("attachments/"))
    tampered = data[:-100] + bytes(100)
    env.services.store.delete(key, bypass_retention=True)
    env.services.store.put(key, tampered)
    received = b""
    try:
        with env.client.stream("GET", body["content_url"], headers=env.auth()) as r:
            assert r.status_code == 200  # headers went out before the digest could be known
            for chunk in r.iter_bytes():
                received += chunk
    except Exception as e:  # noqa: BLE001 - the transport reports the cut-short body
        print("download failed as it should:", type(e).__name__)
    # Never the whole (corrupted) file: the last chunk is held back until the digest matches.
    assert len(received) < len(tampered)
    assert env.audit_actions()[-1][0] == "attachment.integrity_error"
    good = env.upload("lon2.pdf", data, component="other").json()
    r = env.client.get(good["content_url"], headers=env.auth())
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == good["sha256"]


def test_presigned_download_when_configured(make_env: EnvFactory) -> None:
    env = make_env(presigned_download_seconds=60)
    data = make_pdf()
    body = env.upload("don.pdf", data).json()
    none = env.client.get(
        body["content_url"] + "?variant=sanitized", headers=env.auth(), follow_redirects=False
    )
    assert (none.status_code, none.json()["code"]) == (404, "ATTACHMENT_NOT_FOUND")
    r = env.client.get(body["content_url"], headers=env.auth(), follow_redirects=False)
    if env.services.settings.storage_url is None:
        assert r.status_code == 200 and r.content == data  # filesystem: always streamed
        return
    assert r.status_code == 307
    assert r.headers["X-Content-SHA256"] == body["sha256"]
    import requests

    direct = requests.get(r.headers["Location"], timeout=30)  # MinIO itself serves it
    assert direct.status_code == 200 and direct.content == data
    other = env.client.get(body["content_url"], headers=env.auth(1), follow_redirects=False)
    assert other.status_code == 404  # no URL for another agency


def test_idempotency_key_is_scoped_to_the_dossier(env: Env) -> None:
    """Issue 9: an Idempotency-Key replayed for another dossier returned the old record."""
    data = make_pdf()
    key = {"Idempotency-Key": "mc-2026-000777"}
    first = env.upload("don.pdf", data, headers=key)
    assert first.status_code == 201
    before = snapshot(env.services)
    other_dossier = "000.00.12.H12-261127-0002"
    r = env.upload("don.pdf", data, dossier=other_dossier, headers=key)
    assert (r.status_code, r.json()["code"]) == (409, "IDEMPOTENCY_KEY_CONFLICT"), r.text
    r = env.upload("don.pdf", data, component="result", headers=key)
    assert (r.status_code, r.json()["code"]) == (409, "IDEMPOTENCY_KEY_CONFLICT"), r.text
    assert_nothing_written(before, env.services)
    listed = env.client.get(f"/v1/dossiers/{other_dossier}/attachments", headers=env.auth())
    assert listed.json() == []
    # The same request again is still the first record.
    again = env.upload("don.pdf", data, headers=key)
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])


@pytest.mark.parametrize(
    "filename",
    [b"don\x00.pdf", "d" * 300 + ".pdf", "don\x1b[31m.pdf"],
    ids=["nul", "300-characters", "escape"],
)
def test_bad_file_names_are_refused_at_the_edge(env: Env, filename: bytes | str) -> None:
    """Issue 9: on PostgreSQL a file name over ~250 characters or with a NUL answered 500."""
    from tests.support.multipart import multipart

    body, content_type = multipart([("component", "application"), ("file", filename, make_pdf())])
    before = snapshot(env.services)
    r = env.client.post(
        f"/v1/dossiers/{DOSSIER_A}/attachments",
        headers={**env.auth(), "Content-Type": content_type},
        content=body,
    )
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_FILENAME"), r.text
    assert not r.json()["message"].isascii()
    assert_nothing_written(before, env.services)
    assert env.audit_actions()[-1][1]["code"] == "INVALID_FILENAME"


def test_a_long_valid_file_name_is_kept_whole(env: Env) -> None:
    name = "Quyết định " + "x" * 225 + ".pdf"  # 240 characters, more bytes in UTF-8
    r = env.upload(name, make_pdf())
    assert r.status_code == 201, r.text
    assert r.json()["filename"] == name


def test_idempotency_key_and_dossier_code_are_matched_whole() -> None:
    """HTTP cannot carry a newline in a header; the checks must refuse one all the same."""
    from signing_service import errors
    from signing_service.services.attachments import check_idempotency_key
    from signing_service.services.documents import check_dossier_code

    assert check_idempotency_key("mc-2026-000123") == "mc-2026-000123"
    for key in ("mc-2026-000123\n", "mc\x00", ""):
        with pytest.raises(errors.InvalidIdempotencyKey):
            check_idempotency_key(key)
    with pytest.raises(errors.InvalidDossierCode):
        check_dossier_code(DOSSIER_A + "\n", "000.00.12.H12")
