"""Remote signing (CSC API v2) against a provider stand-in on loopback backed by SoftHSM2:
no real provider (VNPT SmartCA, Viettel MySign) can be reached from these machines. The
provider is configured by the operator (``SIGNING_SERVICE_CSC_PROVIDERS``) and the officer's
credential registered for agency A by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from signing_service import errors
from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from signing_service.services.keys import CscMaterial
from signing_service.store.models import SigningKey
from tests.conftest import CSC_OFFICER_PIN, make_settings
from tests.support.keys import profile, register
from tests.support.pdfs import make_pdf
from tests.support.postgres import free_port
from tests.support.state import assert_nothing_written, snapshot

PROVIDER = "stand-in"


@pytest.fixture
def services(
    tmp_path: Path,
    database_url: str,
    dev_pki: tuple[DevPki, int],
    csc_provider: dict[str, str],
) -> Iterator[Services]:
    """Services whose operator configured the stand-in, and a provider that is down."""
    down = {**csc_provider, "url": f"http://127.0.0.1:{free_port()}/csc/v2"}
    settings = make_settings(
        tmp_path, database_url, dev_pki, csc_providers={PROVIDER: csc_provider, "down": down}
    )
    built = Services.build(settings)
    yield built
    built.close()


@pytest.fixture
def remote_profile(services: Services) -> str:
    assert services.dev_pki is not None
    register(services, "tran-thi-binh", CscMaterial(PROVIDER, "officer-1"))
    profile(
        services,
        "agency-a-remote",
        "tran-thi-binh",
        level="B-T",
        appearance={"heading": "Người ký"},
    )
    return "agency-a-remote"


def headers(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT", "B-LTA"])
def test_remote_signature_verifies(
    api: Any, credentials: dict[str, Any], remote_profile: str, level: str
) -> None:
    response = api.post(
        "/v1/signatures",
        headers=headers(credentials),
        data={"profile": remote_profile, "level": level, "authorization": CSC_OFFICER_PIN},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert response.status_code == 201, response.text
    signed = api.get(response.json()["document"]["download_url"], headers=headers(credentials))
    report = api.post("/v1/verifications", files={"file": ("s.pdf", signed.content)}).json()
    assert report["verdict"] == "TOTAL_PASSED", report
    assert report["signatures"][0]["signer"]["common_name"] == "Trần Thị Bình"


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"authorization": "000000"}, "REMOTE_AUTHORIZATION_FAILED"),
        ({}, "REMOTE_AUTHORIZATION_REQUIRED"),
    ],
    ids=["wrong-pin", "no-authorisation"],
)
def test_officer_authorisation_is_passed_through(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    remote_profile: str,
    form: dict[str, str],
    code: str,
) -> None:
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers=headers(credentials),
        data={"profile": remote_profile, **form},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (422, code)
    assert "000000" not in response.text
    assert_nothing_written(before, services)


def _change_reference(services: Services, **change: str) -> None:
    with services.db.transaction() as session:
        row = session.query(SigningKey).filter_by(name="tran-thi-binh").one()
        session.execute(
            update(SigningKey)
            .where(SigningKey.id == row.id)
            .values(reference={**row.reference, **change})
        )
    services.keys.forget(row.uid)


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"provider": "down"}, 503, "REMOTE_SIGNING_UNAVAILABLE"),
        ({"credential": "khong-co"}, 503, "KEY_NOT_FOUND"),
        ({"provider": "bo-cau-hinh"}, 503, "SIGNING_KEY_UNAVAILABLE"),
    ],
    ids=["provider-down", "credential-gone", "provider-unconfigured"],
)
def test_provider_changed_since_registration(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    remote_profile: str,
    change: dict[str, str],
    status: int,
    code: str,
) -> None:
    _change_reference(services, **change)
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers=headers(credentials),
        data={"profile": remote_profile, "authorization": CSC_OFFICER_PIN, "level": "B-B"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert "127.0.0.1" not in response.text
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    ("material", "code"),
    [
        (CscMaterial("khong-co", "officer-1"), "UNKNOWN_CSC_PROVIDER"),
        (CscMaterial(PROVIDER, "khong-co"), "KEY_NOT_FOUND"),
        (CscMaterial("down", "officer-1"), "REMOTE_SIGNING_UNAVAILABLE"),
        (CscMaterial(PROVIDER, "officer 1\x00"), "INVALID_KEY_REFERENCE"),
    ],
    ids=["unconfigured-provider", "unknown-credential", "provider-down", "malformed"],
)
def test_bad_registrations_refused(services: Services, material: CscMaterial, code: str) -> None:
    before = snapshot(services)
    with pytest.raises(errors.ServiceError) as info:
        register(services, "remote-2", material)
    assert info.value.code == code
    assert_nothing_written(before, services)


def test_remote_batch_with_one_authorisation(
    api: Any, credentials: dict[str, Any], remote_profile: str
) -> None:
    files = [
        ("files", (f"{i}.pdf", make_pdf(text=f"to trinh {i}"), "application/pdf")) for i in range(3)
    ]
    response = api.post(
        "/v1/signatures/batch",
        headers=headers(credentials),
        data={"profile": remote_profile, "level": "B-B", "authorization": CSC_OFFICER_PIN},
        files=files,
    )
    assert response.status_code == 200, response.text
    assert response.json()["signed"] == 3
