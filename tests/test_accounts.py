"""API keys through their life (issue, list, revoke, rotate, expire) and the operator role,
through the operator API and the command line; every change audited, every secret shown once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from signing_service.pki.dev import DevPki
from signing_service.services.accounts import create_operator_key
from signing_service.services.container import Services
from signing_service.store.models import ApiClient, AuditEntry
from tests.conftest import REPO
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot

AGENCY_A, AGENCY_B = "000.00.12.H12", "000.00.31.H26"
DOSSIER_A = f"{AGENCY_A}-261127-0001"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def operator(services: Services) -> dict[str, str]:
    issued = create_operator_key(services, "Trực vận hành", actor="cli")
    return {"key_id": issued.key.key_id, "api_key": issued.api_key}


def works(api: Any, key: str) -> int:
    """The status an agency route answers for ``key`` (200 when the key is usable)."""
    return int(api.get(f"/v1/dossiers/{DOSSIER_A}/attachments", headers=bearer(key)).status_code)


def audit_rows(services: Services, action: str) -> list[AuditEntry]:
    with services.db.transaction() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)).all())


def audit_count(services: Services) -> int:
    with services.db.transaction() as session:
        return len(session.scalars(select(AuditEntry.seq)).all())


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        # ssk_<key id>_<secret>: the secret itself is base64url and may hold "_" too.
        assert secret.split("_", 2)[2] not in text


# -- the operator API ----------------------------------------------------------------------------
def test_issue_list_revoke_through_the_operator_api(
    api: Any, services: Services, operator: dict[str, str]
) -> None:
    headers = bearer(operator["api_key"])
    made = api.post(
        "/v1/operator/api-keys",
        headers=headers,
        json={"agency_code": AGENCY_A, "name": "Một cửa điện tử", "role": "client"},
    )
    assert made.status_code == 201, made.text
    body = made.json()
    key_id, api_key = body["key_id"], body["api_key"]
    assert api_key.startswith(f"ssk_{key_id}_")
    assert (body["agency_code"], body["role"], body["status"]) == (AGENCY_A, "client", "active")
    assert body["created_at"].endswith("+07:00")
    assert works(api, api_key) == 200

    # Listed without the secret, and the secret is nowhere in the database.
    listing = api.get("/v1/operator/api-keys", headers=headers, params={"agency": AGENCY_A})
    assert listing.status_code == 200
    assert key_id in [k["key_id"] for k in listing.json()]
    assert all(k["agency_code"] == AGENCY_A for k in listing.json())
    assert all("api_key" not in k and "key_hash" not in k for k in listing.json())
    assert_no_secret(listing.text, api_key)
    with services.db.transaction() as session:
        stored = session.scalars(select(ApiClient).where(ApiClient.key_id == key_id)).one()
        assert api_key.rsplit("_", 1)[-1] not in stored.key_hash

    created = [r for r in audit_rows(services, "api_client.created") if r.subject == key_id]
    assert len(created) == 1
    assert created[0].actor == f"operator:{operator['key_id']}"
    assert created[0].agency_code == AGENCY_A
    assert_no_secret(created[0].details, api_key)

    revoked = api.post(f"/v1/operator/api-keys/{key_id}/revoke", headers=headers)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked" and "api_key" not in revoked.json()
    answer = api.get(f"/v1/dossiers/{DOSSIER_A}/attachments", headers=bearer(api_key))
    assert (answer.status_code, answer.json()["code"]) == (401, "UNAUTHENTICATED")
    entry = audit_rows(services, "api_client.revoked")[-1]
    assert (entry.subject, entry.agency_code) == (key_id, AGENCY_A)
    assert entry.actor == f"operator:{operator['key_id']}"

    before = audit_count(services)
    again = api.post(f"/v1/operator/api-keys/{key_id}/revoke", headers=headers)
    assert (again.status_code, again.json()["code"]) == (409, "API_KEY_REVOKED")
    assert audit_count(services) == before


def test_rotation_keeps_the_old_key_during_the_overlap(
    api: Any, services: Services, operator: dict[str, str], credentials: dict[str, Any]
) -> None:
    headers = bearer(operator["api_key"])
    old_key = credentials["agencies"][0]["api_key"]
    old_id = old_key.split("_")[1]
    rotated = api.post(
        f"/v1/operator/api-keys/{old_id}/rotate", headers=headers, json={"overlap_hours": 2}
    )
    assert rotated.status_code == 201, rotated.text
    new, previous = rotated.json()["new_key"], rotated.json()["previous"]
    assert previous["status"] == "overlap" and previous["replaced_by"] == new["key_id"]
    assert "api_key" not in previous
    assert (new["agency_code"], new["role"], new["name"]) == (AGENCY_A, "client", "demo client")
    assert works(api, old_key) == 200  # still inside the overlap
    assert works(api, new["api_key"]) == 200
    entry = audit_rows(services, "api_client.rotated")[-1]
    assert entry.subject == old_id and entry.agency_code == AGENCY_A
    assert json.loads(entry.details)["new_key_id"] == new["key_id"]
    assert_no_secret(entry.details, new["api_key"], old_key)

    twice = api.post(f"/v1/operator/api-keys/{old_id}/rotate", headers=headers)
    assert (twice.status_code, twice.json()["code"]) == (409, "API_KEY_INACTIVE")
    listing = api.get("/v1/operator/api-keys", headers=headers).text
    assert_no_secret(listing, new["api_key"], old_key)


def test_expired_and_rotated_after_the_overlap_keys_are_refused(
    api: Any, services: Services, operator: dict[str, str], credentials: dict[str, Any]
) -> None:
    headers = bearer(operator["api_key"])
    short = api.post(
        "/v1/operator/api-keys",
        headers=headers,
        json={"agency_code": AGENCY_A, "name": "Tạm thời", "expires_in_days": 3 / 86400},
    ).json()
    old_key = credentials["agencies"][0]["api_key"]
    rotated = api.post(
        f"/v1/operator/api-keys/{old_key.split('_')[1]}/rotate",
        headers=headers,
        json={"overlap_hours": 3 / 3600},
    ).json()
    assert works(api, short["api_key"]) == 200
    assert works(api, old_key) == 200
    time.sleep(3.5)
    for key in (short["api_key"], old_key):
        answer = api.get(f"/v1/dossiers/{DOSSIER_A}/attachments", headers=bearer(key))
        assert (answer.status_code, answer.json()["code"]) == (401, "UNAUTHENTICATED")
    assert works(api, rotated["new_key"]["api_key"]) == 200
    statuses = {
        k["key_id"]: k["status"] for k in api.get("/v1/operator/api-keys", headers=headers).json()
    }
    assert statuses[short["key_id"]] == "expired"
    assert statuses[rotated["previous"]["key_id"]] == "expired"
    # Overlap 0: the old key stops at once.
    newest = rotated["new_key"]
    now = api.post(
        f"/v1/operator/api-keys/{newest['key_id']}/rotate",
        headers=headers,
        json={"overlap_hours": 0},
    ).json()
    assert works(api, newest["api_key"]) == 401
    assert works(api, now["new_key"]["api_key"]) == 200


def test_agency_keys_never_reach_the_operator_api(
    api: Any, services: Services, credentials: dict[str, Any], operator: dict[str, str]
) -> None:
    before, audited = snapshot(services), audit_count(services)
    target = operator["key_id"]
    for agency in credentials["agencies"]:
        for key in (agency["api_key"], agency["admin_api_key"]):
            for method, path, body in (
                ("get", "/v1/operator/api-keys", None),
                ("post", "/v1/operator/api-keys", {"agency_code": agency["code"], "name": "x"}),
                ("post", f"/v1/operator/api-keys/{target}/revoke", None),
                ("post", f"/v1/operator/api-keys/{target}/rotate", None),
            ):
                answer = api.request(method.upper(), path, headers=bearer(key), json=body)
                assert (answer.status_code, answer.json()["code"]) == (403, "FORBIDDEN"), path
    assert_nothing_written(before, services)
    assert audit_count(services) == audited
    assert works(api, operator["api_key"]) == 403  # and the operator key is untouched


def test_operator_keys_never_act_as_an_agency(
    api: Any, services: Services, operator: dict[str, str], credentials: dict[str, Any]
) -> None:
    headers = bearer(operator["api_key"])
    before, audited = snapshot(services), audit_count(services)
    signed = api.post(
        "/v1/signatures",
        headers=headers,
        data={"profile": "agency-a-seal", "level": "B-B"},
        files={"file": ("a.pdf", make_pdf(), "application/pdf")},
    )
    attempts = [
        signed,
        api.get("/v1/documents/00000000-0000-0000-0000-000000000000", headers=headers),
        api.get(f"/v1/dossiers/{DOSSIER_A}/attachments", headers=headers),
        api.post(
            f"/v1/dossiers/{DOSSIER_A}/attachments",
            headers=headers,
            data={"component": "application"},
            files={"file": ("don.pdf", make_pdf(), "application/pdf")},
        ),
        api.get("/v1/admin/profiles", headers=headers),
    ]
    for answer in attempts:
        assert (answer.status_code, answer.json()["code"]) == (403, "OPERATOR_KEY_NOT_AGENCY")
        assert "đơn vị vận hành" in answer.json()["message"]
    assert_nothing_written(before, services)
    assert audit_count(services) == audited


def test_operator_keys_are_minted_and_rotated_on_the_command_line_only(
    api: Any, services: Services, operator: dict[str, str]
) -> None:
    headers = bearer(operator["api_key"])
    audited = audit_count(services)
    minted = api.post(
        "/v1/operator/api-keys",
        headers=headers,
        json={"agency_code": AGENCY_A, "name": "x", "role": "operator"},
    )
    assert (minted.status_code, minted.json()["code"]) == (403, "OPERATOR_KEY_CLI_ONLY")
    itself = api.post(f"/v1/operator/api-keys/{operator['key_id']}/rotate", headers=headers)
    assert (itself.status_code, itself.json()["code"]) == (403, "OPERATOR_KEY_CLI_ONLY")
    assert audit_count(services) == audited
    # Revoking is always allowed; the revoked operator key is then refused.
    other = create_operator_key(services, "Ca đêm", actor="cli")
    gone = api.post(f"/v1/operator/api-keys/{other.key.key_id}/revoke", headers=headers)
    assert gone.status_code == 200
    refused = api.get("/v1/operator/api-keys", headers=bearer(other.api_key))
    assert (refused.status_code, refused.json()["code"]) == (401, "UNAUTHENTICATED")


BAD = [
    ("get", "/v1/operator/api-keys?agency=000.00.99.H99", None, 404, "AGENCY_NOT_FOUND"),
    ("get", "/v1/operator/api-keys?agency=12.H12%00", None, 422, "INVALID_AGENCY"),
    (
        "post",
        "/v1/operator/api-keys",
        {"agency_code": "000.00.99.H99", "name": "x"},
        404,
        "AGENCY_NOT_FOUND",
    ),
    ("post", "/v1/operator/api-keys", {"agency_code": "A\x00", "name": "x"}, 422, "INVALID_AGENCY"),
    (
        "post",
        "/v1/operator/api-keys",
        {"agency_code": AGENCY_A, "name": "a\x00b"},
        422,
        "INVALID_API_KEY_REQUEST",
    ),
    (
        "post",
        "/v1/operator/api-keys",
        {"agency_code": AGENCY_A, "name": "x", "role": "root"},
        422,
        "INVALID_API_KEY_REQUEST",
    ),
    (
        "post",
        "/v1/operator/api-keys",
        {"agency_code": AGENCY_A, "name": "x", "expires_in_days": 0},
        422,
        "INVALID_API_KEY_REQUEST",
    ),
    (
        "post",
        "/v1/operator/api-keys",
        {"agency_code": AGENCY_A, "name": "x", "extra": 1},
        422,
        "INVALID_API_KEY_REQUEST",
    ),
    ("post", "/v1/operator/api-keys/ffffffffffffffff/revoke", None, 404, "API_KEY_NOT_FOUND"),
    # A control character in the path is refused at the edge, before any route (api/edge.py).
    ("post", "/v1/operator/api-keys/..%00/revoke", None, 404, "NOT_FOUND"),
    ("post", "/v1/operator/api-keys/ffffffffffffffff/rotate", None, 404, "API_KEY_NOT_FOUND"),
    (
        "post",
        "/v1/operator/api-keys/ffffffffffffffff/rotate",
        {"overlap_hours": -1},
        422,
        "INVALID_API_KEY_REQUEST",
    ),
    (
        "post",
        "/v1/operator/api-keys/ffffffffffffffff/rotate",
        {"overlap_hours": 721},
        422,
        "INVALID_API_KEY_REQUEST",
    ),
    # Newuser findings 2–3: the README's code for every bad name, role, expiry or overlap, and
    # OPERATOR_KEY_CLI_ONLY whether or not an agency is named (an operator key has none).
    (
        "post",
        "/v1/operator/api-keys",
        {"name": "x", "role": "operator"},
        403,
        "OPERATOR_KEY_CLI_ONLY",
    ),
    (
        "post",
        "/v1/operator/api-keys",
        {"agency_code": AGENCY_A, "name": ""},
        422,
        "INVALID_API_KEY_REQUEST",
    ),
    ("post", "/v1/operator/api-keys", {"name": "x"}, 422, "INVALID_API_KEY_REQUEST"),
    ("post", "/v1/operator/api-keys", None, 422, "INVALID_API_KEY_REQUEST"),
    (
        "post",
        "/v1/operator/api-keys",
        {"agency_code": AGENCY_A, "name": "x", "expires_in_days": -1},
        422,
        "INVALID_API_KEY_REQUEST",
    ),
    # Red team 23b, R23B-9: a string or a boolean was read as a number of days.
    *(
        (
            "post",
            "/v1/operator/api-keys",
            {"agency_code": AGENCY_A, "name": "x", "expires_in_days": value},
            422,
            "INVALID_API_KEY_REQUEST",
        )
        for value in ("3", True)
    ),
    (
        "post",
        "/v1/operator/api-keys/ffffffffffffffff/rotate",
        {"overlap_hours": "24"},
        422,
        "INVALID_API_KEY_REQUEST",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD)
def test_bad_operator_requests_are_refused_and_nothing_written(
    api: Any,
    services: Services,
    operator: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    code: str,
) -> None:
    before, audited = snapshot(services), audit_count(services)
    with services.db.transaction() as session:
        keys = len(session.scalars(select(ApiClient.id)).all())
    answer = api.request(method.upper(), path, headers=bearer(operator["api_key"]), json=body)
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert "" not in answer.json().get("details", {}).get("fields", []), answer.text
    assert_nothing_written(before, services)
    assert audit_count(services) == audited
    with services.db.transaction() as session:
        assert len(session.scalars(select(ApiClient.id)).all()) == keys


def test_operator_api_without_a_key(api: Any) -> None:
    answer = api.get("/v1/operator/api-keys")
    assert (answer.status_code, answer.json()["code"]) == (401, "UNAUTHENTICATED")


# -- the command line ----------------------------------------------------------------------------
@pytest.fixture
def env(tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]) -> dict[str, str]:
    pki, port = dev_pki
    (tmp_path / "var").mkdir(exist_ok=True)  # commands refuse a missing one (red team 12 F10)
    return {
        **os.environ,
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_DATABASE_URL": database_url,
        "SIGNING_SERVICE_DEV_PKI_DIR": str(pki.directory),
        "SIGNING_SERVICE_DEV_PKI_PORT": str(port),
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signing_service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_key_lifecycle_from_the_command_line(
    env: dict[str, str], tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    from fastapi.testclient import TestClient

    from signing_service.api.app import create_app
    from tests.conftest import make_settings

    op = run(env, "operator-key", "add", "--name", "Trực vận hành")
    assert op.returncode == 0, op.stderr
    assert "chỉ hiển thị một lần" in op.stdout
    operator_key = op.stdout.strip().splitlines()[-1]
    assert operator_key.startswith("ssk_")
    also = run(env, "client", "add", "--role", "operator", "--name", "Dự phòng", "--json")
    assert also.returncode == 0 and json.loads(also.stdout)["agency_code"] is None
    wrong = run(env, "client", "add", "--role", "operator", "--agency", AGENCY_A, "--name", "x")
    assert wrong.returncode == 3 and "Lỗi cú pháp lệnh" in wrong.stderr

    made = run(
        env, "client", "add", "--agency", AGENCY_B, "--name", "Một cửa", "--expires", "90", "--json"
    )
    assert made.returncode == 0, made.stderr
    issued = json.loads(made.stdout)
    assert issued["expires_at"] and issued["role"] == "client"

    listed = run(env, "client", "list")
    assert listed.returncode == 0, listed.stderr
    assert issued["key_id"] in listed.stdout and "đang dùng" in listed.stdout
    assert "(vận hành)" in listed.stdout
    assert_no_secret(listed.stdout, issued["api_key"], operator_key)
    only_b = json.loads(run(env, "client", "list", "--agency", AGENCY_B, "--json").stdout)
    assert {k["agency_code"] for k in only_b} == {AGENCY_B}
    assert all("api_key" not in k for k in only_b)
    unknown = run(env, "client", "list", "--agency", "000.00.99.H99")
    assert unknown.returncode == 5 and "AGENCY_NOT_FOUND" in unknown.stderr

    rotated = run(env, "client", "rotate", issued["key_id"], "--overlap", "0", "--json")
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)["new_key"]
    assert new["agency_code"] == AGENCY_B and new["expires_at"]
    again = run(env, "client", "rotate", issued["key_id"])
    assert again.returncode == 5 and "API_KEY_INACTIVE" in again.stderr

    revoked = run(env, "client", "revoke", new["key_id"])
    assert revoked.returncode == 0 and "Đã thu hồi" in revoked.stdout
    twice = run(env, "client", "revoke", new["key_id"])
    assert twice.returncode == 5 and "API_KEY_REVOKED" in twice.stderr
    missing = run(env, "client", "revoke", "ffffffffffffffff")
    assert missing.returncode == 5 and "API_KEY_NOT_FOUND" in missing.stderr
    bad = run(env, "client", "rotate", new["key_id"], "--overlap", "nan")
    assert bad.returncode == 5 and "INVALID_API_KEY_REQUEST" in bad.stderr
    # One rule, one message, whichever side of it (red team F8: 0 and -5 were told apart).
    said = set()
    for days in ("0", "-5", "3651"):
        refused = run(env, "client", "add", "--agency", AGENCY_A, "--name", "x", "--expires", days)
        assert refused.returncode == 5 and "INVALID_API_KEY_REQUEST" in refused.stderr
        said.add(refused.stderr)
    assert len(said) == 1 and "lớn hơn 0 và không quá 3650" in said.pop()

    # What the service now answers for each key, from the same database.
    settings = make_settings(
        tmp_path, env["SIGNING_SERVICE_DATABASE_URL"], dev_pki, data_dir=tmp_path / "var"
    )
    services = Services.build(settings)
    try:
        with TestClient(create_app(services), raise_server_exceptions=False) as api:
            assert works(api, issued["api_key"]) == 401  # rotated with overlap 0
            assert works(api, new["api_key"]) == 401  # revoked
            listing = api.get("/v1/operator/api-keys", headers=bearer(operator_key))
            assert listing.status_code == 200
        actions = [
            (r.action, r.subject, r.actor)
            for r in audit_rows(services, "api_client.created")
            + audit_rows(services, "api_client.rotated")
            + audit_rows(services, "api_client.revoked")
        ]
        assert ("api_client.created", issued["key_id"], "cli") in actions
        assert ("api_client.rotated", issued["key_id"], "cli") in actions
        assert ("api_client.revoked", new["key_id"], "cli") in actions
        with services.db.transaction() as session:
            details = " ".join(session.scalars(select(AuditEntry.details)).all())
        assert_no_secret(details, issued["api_key"], new["api_key"], operator_key)
    finally:
        services.close()
