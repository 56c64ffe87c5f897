"""Signing profiles managed through the admin API, per agency; bad profiles are refused before
any signing with the same codes as signing."""

from __future__ import annotations

from typing import Any

import pytest

from signing_service.services.container import Services
from tests.support.pdfs import make_pdf


def admin(credentials: dict[str, Any], i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][i]['admin_api_key']}"}


def client(credentials: dict[str, Any], i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][i]['api_key']}"}


def p12(services: Services, label: str) -> str:
    assert services.dev_pki is not None
    return f"file:{services.dev_pki.p12_path(label)}"


def test_create_use_update_disable(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    assert services.dev_pki is not None
    body = {
        "name": "so-tu-phap-sao-y",
        "key_uri": p12(services, "agency-a-seal"),
        "level": "B-T",
        "tsa_url": services.dev_pki.tsa_url,
        "reason": "Sao y bản chính",
        "appearance": {"heading": "SAO Y"},
    }
    created = api.post("/v1/admin/profiles", headers=admin(credentials), json=body)
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["key_source"] == "file" and "p12" not in created.text  # no paths leak
    assert len(view["certificate_sha256"]) == 64

    listed = api.get("/v1/admin/profiles", headers=admin(credentials)).json()
    assert "so-tu-phap-sao-y" in [p["name"] for p in listed]

    signed = api.post(
        "/v1/signatures",
        headers=client(credentials),
        data={"profile": "so-tu-phap-sao-y"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert signed.status_code == 201, signed.text

    changed = api.patch(
        "/v1/admin/profiles/so-tu-phap-sao-y",
        headers=admin(credentials),
        json={"level": "B-B", "reason": "Trích sao"},
    )
    assert changed.status_code == 200 and changed.json()["level"] == "B-B"

    gone = api.delete("/v1/admin/profiles/so-tu-phap-sao-y", headers=admin(credentials))
    assert gone.status_code == 204
    refused = api.post(
        "/v1/signatures",
        headers=client(credentials),
        data={"profile": "so-tu-phap-sao-y"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert refused.json()["code"] == "PROFILE_NOT_FOUND"


@pytest.mark.parametrize(
    ("key_label", "status", "code"),
    [
        ("revoked-signer", 422, "SIGNER_CERT_REVOKED"),
        ("expired-signer", 422, "SIGNER_CERT_EXPIRED"),
        ("wrong-usage", 422, "SIGNER_CERT_KEY_USAGE"),
        ("weak-key", 422, "ALGORITHM_NOT_ALLOWED"),
    ],
)
def test_profiles_that_could_not_sign_are_refused(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    key_label: str,
    status: int,
    code: str,
) -> None:
    body = {"name": f"p-{key_label}", "key_uri": p12(services, key_label), "level": "B-B"}
    response = api.post("/v1/admin/profiles", headers=admin(credentials), json=body)
    assert (response.status_code, response.json()["code"]) == (status, code)
    listed = api.get("/v1/admin/profiles", headers=admin(credentials)).json()
    assert f"p-{key_label}" not in [p["name"] for p in listed]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "x y", "key_uri": "external:"}, "INVALID_PROFILE"),
        ({"name": "ok-name", "key_uri": "http://evil"}, "INVALID_KEY_URI"),
        ({"name": "ok-name", "key_uri": "external:", "level": "B-Q"}, "INVALID_SIGNATURE_LEVEL"),
        ({"name": "ok-name", "key_uri": "external:", "level": "B-T"}, "INVALID_PROFILE"),
        ({"name": "agency-a-seal", "key_uri": "external:", "level": "B-B"}, "PROFILE_EXISTS"),
    ],
)
def test_invalid_profiles(
    api: Any, credentials: dict[str, Any], body: dict[str, str], code: str
) -> None:
    response = api.post("/v1/admin/profiles", headers=admin(credentials), json=body)
    assert response.json()["code"] == code, response.text


def test_only_admin_keys_of_the_same_agency(api: Any, credentials: dict[str, Any]) -> None:
    response = api.get("/v1/admin/profiles", headers=client(credentials))
    assert (response.status_code, response.json()["code"]) == (403, "FORBIDDEN")
    response = api.get("/v1/admin/profiles/agency-a-seal", headers=admin(credentials, 1))
    assert (response.status_code, response.json()["code"]) == (404, "PROFILE_NOT_FOUND")
    response = api.delete("/v1/admin/profiles/agency-a-seal", headers=admin(credentials, 1))
    assert response.status_code == 404
    assert api.get("/v1/admin/profiles").status_code == 401
