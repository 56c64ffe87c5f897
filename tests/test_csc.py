"""Remote signing (CSC API v2) against a provider stand-in on loopback backed by SoftHSM2:
no real provider (VNPT SmartCA, Viettel MySign) can be reached from these machines."""

from __future__ import annotations

from typing import Any

import pytest

from signing_service.services.container import Services
from tests.conftest import CSC_OFFICER_PIN
from tests.support.pdfs import make_pdf
from tests.support.postgres import free_port
from tests.support.state import assert_nothing_written, snapshot


@pytest.fixture
def remote_profile(services: Services, csc_provider: str) -> str:
    from signing_service.store.models import SigningProfile

    assert services.dev_pki is not None
    with services.db.transaction() as session:
        session.add(
            SigningProfile(
                agency_id=1,
                name="agency-a-remote",
                key_uri=csc_provider,
                level="B-T",
                tsa_url=services.dev_pki.tsa_url,
                appearance={"heading": "Người ký"},
            )
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


def test_provider_down_is_503(
    api: Any, services: Services, credentials: dict[str, Any], csc_provider: str
) -> None:
    from signing_service.store.models import SigningProfile

    port = csc_provider.split("127.0.0.1:")[1].split("/")[0]
    down = csc_provider.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}")
    with services.db.transaction() as session:
        session.add(SigningProfile(agency_id=1, name="remote-down", key_uri=down, level="B-B"))
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers=headers(credentials),
        data={"profile": "remote-down", "authorization": CSC_OFFICER_PIN},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (503, "REMOTE_SIGNING_UNAVAILABLE")
    assert_nothing_written(before, services)


def test_unknown_credential_is_refused(
    api: Any, services: Services, credentials: dict[str, Any], csc_provider: str
) -> None:
    from signing_service.store.models import SigningProfile

    with services.db.transaction() as session:
        session.add(
            SigningProfile(
                agency_id=1,
                name="remote-unknown",
                level="B-B",
                key_uri=csc_provider.replace("officer-1", "khong-co"),
            )
        )
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers=headers(credentials),
        data={"profile": "remote-unknown", "authorization": CSC_OFFICER_PIN},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (503, "KEY_NOT_FOUND")
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
