"""Signing profiles managed through the admin API, per agency: a profile names one of its
agency's registered keys; a profile whose key could not sign is refused with the same codes as
signing; names are unique per agency."""

from __future__ import annotations

from typing import Any

import pytest

from signing_service.services.container import Services
from tests.support.keys import store_without_checks
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot


def admin(credentials: dict[str, Any], i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][i]['admin_api_key']}"}


def client(credentials: dict[str, Any], i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][i]['api_key']}"}


def test_create_use_update_disable(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    body = {
        "name": "so-tu-phap-sao-y",
        "key": "agency-a-seal",
        "level": "B-T",
        "tsa": "dev",
        "reason": "Sao y bản chính",
        "appearance": {"heading": "SAO Y"},
    }
    created = api.post("/v1/admin/profiles", headers=admin(credentials), json=body)
    assert created.status_code == 201, created.text
    view = created.json()
    assert (view["key"], view["key_source"], view["tsa"]) == ("agency-a-seal", "file", "dev")
    assert "p12" not in created.text and "/" not in view["key"]  # no paths leak
    assert len(view["certificate_sha256"]) == 64
    assert view["appearance"]["heading"] == "SAO Y" and view["appearance"]["width"] == 220

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
    assert changed.json()["appearance"]["heading"] == "SAO Y"  # untouched fields stay
    # The very next signature follows the changed profile (its row is read per request).
    again = api.post(
        "/v1/signatures",
        headers=client(credentials),
        data={"profile": "so-tu-phap-sao-y"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert again.status_code == 201, again.text
    assert (signed.json()["level"], again.json()["level"]) == ("B-T", "B-B")

    gone = api.delete("/v1/admin/profiles/so-tu-phap-sao-y", headers=admin(credentials))
    assert gone.status_code == 204
    refused = api.post(
        "/v1/signatures",
        headers=client(credentials),
        data={"profile": "so-tu-phap-sao-y"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert refused.json()["code"] == "PROFILE_NOT_FOUND"


def test_admin_sees_its_agency_keys(api: Any, credentials: dict[str, Any]) -> None:
    keys = api.get("/v1/admin/keys", headers=admin(credentials)).json()
    names = {k["name"]: k["kind"] for k in keys}
    assert names["agency-a-seal"] == "pkcs12" and names["nguyen-van-an"] == "officer"
    assert "agency-b-seal" not in names
    assert all("/" not in str(v) for k in keys for key, v in k.items() if key != "subject")
    other = api.get("/v1/admin/keys", headers=admin(credentials, 1)).json()
    assert [k["name"] for k in other] == ["agency-b-seal"]
    assert api.get("/v1/admin/keys", headers=client(credentials)).status_code == 403


@pytest.mark.parametrize(
    ("key_label", "status", "code"),
    [
        ("revoked-signer", 422, "SIGNER_CERT_REVOKED"),
        ("expired-signer", 422, "SIGNER_CERT_EXPIRED"),
        ("wrong-usage", 422, "SIGNER_CERT_KEY_USAGE"),
        ("weak-key", 422, "ALGORITHM_NOT_ALLOWED"),
    ],
)
def test_profiles_whose_key_could_not_sign_are_refused(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    key_label: str,
    status: int,
    code: str,
) -> None:
    """A key that passed its checks at registration and has gone bad since."""
    assert services.dev_pki is not None
    store_without_checks(services, key_label, services.dev_pki.p12_path(key_label))
    before = snapshot(services)
    body = {"name": f"p-{key_label}", "key": key_label, "level": "B-B"}
    response = api.post("/v1/admin/profiles", headers=admin(credentials), json=body)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert_nothing_written(before, services)
    listed = api.get("/v1/admin/profiles", headers=admin(credentials)).json()
    assert f"p-{key_label}" not in [p["name"] for p in listed]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "x y", "key": "agency-a-seal"}, 422, "INVALID_REQUEST"),
        ({"name": "ok-name", "key": "khong-co"}, 422, "UNKNOWN_KEY"),
        ({"name": "ok-name", "key": "agency-a-seal", "level": "B-Q"}, 422, "INVALID_REQUEST"),
        ({"name": "ok-name", "key": "agency-a-seal", "tsa": "khong-co"}, 422, "UNKNOWN_TSA"),
        ({"name": "ok-name"}, 422, "INVALID_PROFILE"),
        ({"name": "ok-name", "key": "nguyen-van-an"}, 422, "INVALID_PROFILE"),
        ({"name": "ok-name", "key": "agency-a-seal", "two_step": True}, 422, "INVALID_PROFILE"),
        ({"name": "ok-name", "two_step": True, "level": "B-LTA"}, 422, "INVALID_PROFILE"),
        ({"name": "agency-a-seal", "key": "agency-a-seal"}, 409, "PROFILE_EXISTS"),
    ],
)
def test_invalid_profiles(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    before = snapshot(services)
    response = api.post("/v1/admin/profiles", headers=admin(credentials), json=body)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert_nothing_written(before, services)


def test_two_step_profile_for_one_officer(api: Any, credentials: dict[str, Any]) -> None:
    body = {"name": "pho-giam-doc", "key": "nguyen-van-an", "two_step": True, "level": "B-B"}
    created = api.post("/v1/admin/profiles", headers=admin(credentials), json=body)
    assert created.status_code == 201, created.text
    assert (created.json()["key_source"], created.json()["key"]) == ("external", "nguyen-van-an")


def test_profile_names_are_unique_per_agency_only(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Issue 9: a 409 told agency B that agency A has a profile `agency-a-seal`."""
    body = {"name": "agency-a-seal", "key": "agency-b-seal", "level": "B-B"}
    created = api.post("/v1/admin/profiles", headers=admin(credentials, 1), json=body)
    assert created.status_code == 201, created.text
    # Each agency signs with its own profile of that name.
    for i, org in ((0, "Sở Tư pháp tỉnh Demo A"), (1, "UBND xã Demo B")):
        signed = api.post(
            "/v1/signatures",
            headers=client(credentials, i),
            data={"profile": "agency-a-seal", "level": "B-B"},
            files={"file": ("a.pdf", make_pdf())},
        )
        assert signed.status_code == 201, signed.text
        content = api.get(signed.json()["document"]["download_url"], headers=client(credentials, i))
        report = api.post("/v1/verifications", files={"file": ("s.pdf", content.content)}).json()
        assert report["signatures"][0]["signer"]["organization"] == org
    before = snapshot(services)
    again = api.post("/v1/admin/profiles", headers=admin(credentials, 1), json=body)
    assert (again.status_code, again.json()["code"]) == (409, "PROFILE_EXISTS")
    assert_nothing_written(before, services)


def test_only_admin_keys_of_the_same_agency(api: Any, credentials: dict[str, Any]) -> None:
    response = api.get("/v1/admin/profiles", headers=client(credentials))
    assert (response.status_code, response.json()["code"]) == (403, "FORBIDDEN")
    response = api.get("/v1/admin/profiles/agency-a-seal", headers=admin(credentials, 1))
    assert (response.status_code, response.json()["code"]) == (404, "PROFILE_NOT_FOUND")
    response = api.delete("/v1/admin/profiles/agency-a-seal", headers=admin(credentials, 1))
    assert response.status_code == 404
    assert api.get("/v1/admin/profiles").status_code == 401


@pytest.mark.parametrize(
    "fields",
    [
        {"appearance": {"heading": "😀😀😀 漢字 עברית"}},  # no glyph in the stamp's font
        {"appearance": {"heading": "\ufeff\u200b\u00ad"}},  # shows nothing
        {"reason": "Phê duyệt\u202eevil"},  # right-to-left override
        {"reason": "a\u0085b"},  # C1 control
        {"location": "Hà Nội\u2028Huế"},  # line separator
    ],
    ids=["no-glyph", "invisible", "bidi-override", "c1-control", "line-separator"],
)
def test_text_a_person_would_not_see_as_saved_is_refused(
    api: Any, services: Services, credentials: dict[str, Any], fields: dict[str, Any]
) -> None:
    """Red team (issue 9): such headings were saved and drawn blank; a reason with a bidi
    override was embedded in /Reason, which viewers show reversed."""
    before = snapshot(services)
    body = {"name": "chu-an", "key": "agency-a-seal", **fields}
    response = api.post("/v1/admin/profiles", headers=admin(credentials), json=body)
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_REQUEST")
    named = response.json()["details"]["fields"]
    assert any(field.split(".")[-1] in str(fields) for field in named), named
    assert_nothing_written(before, services)


def test_vietnamese_text_in_every_form_is_accepted(api: Any, credentials: dict[str, Any]) -> None:
    """Precomposed or decomposed (NFD) Vietnamese, the đồng sign and typographic punctuation."""
    import unicodedata

    body = {
        "name": "sao-y-nfd",
        "key": "agency-a-seal",
        "reason": unicodedata.normalize("NFD", "Sao y bản chính – Đà Nẵng"),
        "location": "Thành phố Hồ Chí Minh, phí 50.000 ₫",
        "appearance": {"heading": "SAO Y BẢN CHÍNH"},
    }
    response = api.post("/v1/admin/profiles", headers=admin(credentials), json=body)
    assert response.status_code == 201, response.text
