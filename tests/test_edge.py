"""Every request answered in shape (issue 9, item 8): Retry-After on every 503, paths that
name nothing, profile fields checked at the edge; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from signing_service import errors
from signing_service.api.app import create_app
from signing_service.services.container import Services
from tests.support.state import assert_nothing_written, snapshot

UNAVAILABLE = sorted(
    (
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ServiceError) and cls.status == 503
    ),
    key=lambda cls: cls.code,
)


def test_the_503_errors_are_the_expected_ones() -> None:
    # A new 503 is added here on purpose: the test below then proves it carries Retry-After.
    assert [cls.code for cls in UNAVAILABLE] == [
        "ANONYMOUS_BUSY",
        "DATABASE_UNAVAILABLE",
        "EXTENSION_VALIDATION_DATA_UNAVAILABLE",
        "KEY_NOT_FOUND",
        "KEY_PIN_INCORRECT",
        "KEY_TOKEN_NOT_FOUND",
        "MALWARE_SCAN_UNAVAILABLE",
        "NOT_READY",
        "REMOTE_SIGNING_UNAVAILABLE",
        "REPORT_BUSY",
        "REPORT_NOT_CONFIGURED",
        "SERVICE_UNAVAILABLE",
        "SIGNER_CERT_STATUS_UNKNOWN",
        "SIGNING_KEY_UNAVAILABLE",
        "STORAGE_UNAVAILABLE",
        "TIMESTAMP_TSA_STATUS_UNKNOWN",
        "TIMESTAMP_UNAVAILABLE",
        "TOO_MANY_CONNECTIONS",
        "VERIFICATION_BUSY",
    ]


@pytest.mark.parametrize("error", UNAVAILABLE, ids=lambda cls: cls.code)
def test_every_503_carries_retry_after(
    services: Services, error: type[errors.ServiceError]
) -> None:
    """Whichever layer raises it, a 503 leaves the one error handler with Retry-After."""
    app = create_app(services)

    async def unavailable() -> None:
        raise error()

    app.add_api_route("/test-only/unavailable", unavailable)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/test-only/unavailable")
    assert response.status_code == 503
    assert response.json()["code"] == error.code
    assert not response.json()["message"].isascii()
    assert response.headers["Retry-After"] == str(services.settings.retry_after_seconds)


def test_readyz_not_ready_carries_retry_after(api: Any, services: Services) -> None:
    """Issue 9: 503 answers from /readyz lacked Retry-After."""
    root = services.settings.resolved_data_dir / "objects"
    moved = root.with_name("objects-away")
    root.rename(moved)
    try:
        response = api.get("/readyz")
    finally:
        moved.rename(root)
    assert response.status_code == 503
    assert response.json()["code"] == "NOT_READY"
    assert response.headers["Retry-After"] == str(services.settings.retry_after_seconds)
    assert api.get("/readyz").status_code == 200


def admin(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][0]['admin_api_key']}"}


PROFILE_FIELDS = [
    ("reason", "r" * 256),
    ("location", "l" * 256),
    ("reason", "Ký\x00số"),
    ("location", "\ud800"),
    ("name", "p" * 129),
    ("name", "ten\x00"),
    ("tsa_url", "http://127.0.0.1/\x00"),
    ("key_uri", "file:/x\x00.p12"),
    ("level", "B-T" * 10),
]


@pytest.mark.parametrize(("field", "value"), PROFILE_FIELDS)
def test_profile_fields_are_checked_at_the_edge(
    api: Any, services: Services, credentials: dict[str, Any], field: str, value: str
) -> None:
    """Issue 9: on PostgreSQL a profile field over 255 characters answered 500."""
    pki = services.dev_pki
    assert pki is not None
    body = {
        "name": "edge-test",
        "key_uri": f"file:{pki.p12_path('agency-a-seal')}",
        "level": "B-B",
        field: value,
    }
    before = snapshot(services)
    # json.dumps escapes a lone surrogate (\ud800) as JSON allows; httpx would refuse it.
    headers = {**admin(credentials), "Content-Type": "application/json"}
    response = api.post("/v1/admin/profiles", headers=headers, content=json.dumps(body))
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_REQUEST")
    assert field in response.json()["details"]["fields"]
    changed = api.patch(
        "/v1/admin/profiles/agency-a-seal", headers=headers, content=json.dumps({field: value})
    )
    if field != "name":
        assert (changed.status_code, changed.json()["code"]) == (422, "INVALID_REQUEST")
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/documents/abc%00",
        "/v1/attachments/abc%00def",
        "/v1/attachments/%0A/content",
        "/v1/admin/profiles/agency-a-seal%00",
        "/v1/dossiers/000.00.12.H12-261127-0001%0A/attachments",
    ],
)
def test_a_path_with_control_characters_names_nothing(
    api: Any, services: Services, credentials: dict[str, Any], path: str
) -> None:
    """Ids reach the database as they are; PostgreSQL refuses a NUL (500): such a path
    names no resource and is answered 404 before any route runs."""
    before = snapshot(services)
    for method in ("GET", "POST", "DELETE"):
        response = api.request(method, path, headers=admin(credentials))
        assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND")
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    "appearance",
    [{"width": "abc"}, {"font_size": "to"}, {"height": -5}, {"heading": 7}, {"margin": None}],
)
def test_a_stored_profile_with_a_broken_appearance_fails_signing_not_500(
    api: Any, services: Services, credentials: dict[str, Any], appearance: dict[str, Any]
) -> None:
    """Issue 9: ``appearance: {"width": "abc"}`` was saved, then every signature with that
    profile answered 500. Profiles are validated at save time (the key registry's work);
    one stored before that still never answers 500, nor blames the document."""
    from signing_service.store.models import SigningProfile
    from tests.support.pdfs import make_pdf

    with services.db.transaction() as session:
        seal = session.query(SigningProfile).filter_by(name="agency-a-seal").one()
        session.add(
            SigningProfile(
                agency_id=seal.agency_id,
                name="broken-stamp",
                level="B-B",
                key_id=seal.key_id,
                appearance=appearance,
            )
        )
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers={"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"},
        data={"profile": "broken-stamp"},
        files={"file": ("qd.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_PROFILE")
    assert_nothing_written(before, services)
