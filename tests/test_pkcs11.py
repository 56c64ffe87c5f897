"""Signing with a seal key held on a real SoftHSM2 token over PKCS#11."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from signing_service._async import run_sync
from signing_service.pki.dev import DevPki
from signing_service.pki.softhsm import TokenKey
from signing_service.services.container import Services
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys import KeyCache, KeySourceError
from signing_service.signing.levels import SignatureLevel
from signing_service.signing.pkcs11 import Pkcs11Uri
from signing_service.trust import TrustStore
from signing_service.verification.validate import Verifier
from tests.conftest import REPO
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot


@pytest.fixture
def token(hsm_key: TokenKey | None) -> TokenKey:
    if hsm_key is None:
        pytest.skip("SoftHSM2 is not installed (make test installs it)")
    return hsm_key


def uri(token: TokenKey, pki: DevPki, cert: str = "agency-a-hsm", **changes: str) -> str:
    base = token.uri(pki.cert_path(cert), pki.cert_path("interm"))
    for old, new in changes.items():
        base = base.replace(old, new)
    return base


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT", "B-LTA"])
def test_hsm_profile_signs_at_every_level_via_api(
    api: Any, services: Services, credentials: dict[str, Any], token: TokenKey, level: str
) -> None:
    assert "agency-a-hsm-seal" in credentials["agencies"][0]["profiles"]
    headers = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    response = api.post(
        "/v1/signatures",
        headers=headers,
        data={"profile": "agency-a-hsm-seal", "level": level},
        files={"file": ("a.pdf", make_pdf(), "application/pdf")},
    )
    assert response.status_code == 201, response.text
    signed = api.get(response.json()["document"]["download_url"], headers=headers).content
    report = api.post("/v1/verifications", files={"file": ("s.pdf", signed)}).json()
    assert report["verdict"] == "TOTAL_PASSED", report
    assert report["signatures"][0]["signer"]["common_name"] == "Sở Tư pháp tỉnh Demo A (HSM)"


def test_concurrent_signing_on_one_session(dev_pki: tuple[DevPki, int], token: TokenKey) -> None:
    pki, _ = dev_pki
    key = KeyCache().get(uri(token, pki), None)
    trust = TrustStore.load(REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path)

    def one(i: int) -> str:
        signed = run_sync(
            async_sign_pdf(make_pdf(text=f"doc {i}"), key, SignOptions(level=SignatureLevel.B_B))
        )
        return run_sync(Verifier(trust).async_verify(signed)).verdict.value

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(one, range(16))) == {"TOTAL_PASSED"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"token=demo-a-seal": "token=khong-co-token"}, "unavailable"),
        ({"object=seal": "object=khong-co-khoa"}, "not found"),
        ({"cert=": "cert=X"}, "does not match"),  # replaced below with another certificate
    ],
    ids=["missing-token", "missing-key-label", "certificate-of-another-key"],
)
def test_bad_token_references_refused(
    dev_pki: tuple[DevPki, int], token: TokenKey, change: dict[str, str], expected: str
) -> None:
    pki, _ = dev_pki
    if "cert=" in change:
        target = uri(token, pki, cert="agency-a-seal")
    else:
        target = uri(token, pki, **change)
    with pytest.raises(KeySourceError, match=expected):
        KeyCache().get(target, None)


def test_wrong_pin_refused_and_not_revealed(
    dev_pki: tuple[DevPki, int], token: TokenKey, monkeypatch: Any
) -> None:
    pki, _ = dev_pki
    monkeypatch.setenv("WRONG_PIN", "0000-sai-ma-pin")
    target = uri(token, pki, **{f"pin-source=file:{token.pin_file}": "pin-source=env:WRONG_PIN"})
    KeyCache().get(uri(token, pki), None)  # the right PIN logged this process in
    with pytest.raises(KeySourceError, match="PinIncorrect") as info:
        KeyCache().get(target, None)
    assert "0000-sai-ma-pin" not in str(info.value)


def test_wrong_pin_refused_by_the_token(dev_pki: tuple[DevPki, int], token: TokenKey) -> None:
    """In a fresh process (nobody logged in), the token itself rejects the PIN."""
    import os
    import subprocess
    import sys

    pki, _ = dev_pki
    target = uri(token, pki, **{f"pin-source=file:{token.pin_file}": "pin-source=env:WRONG_PIN"})
    code = (
        "from signing_service.signing.keys import KeyCache, KeySourceError\n"
        "try:\n"
        f"    KeyCache().get({target!r}, None)\n"
        "except KeySourceError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "WRONG_PIN": "0000-sai-ma-pin"},
        cwd=REPO,
        timeout=60,
    )
    assert "PinIncorrect" in result.stdout, result.stdout + result.stderr
    assert "0000-sai-ma-pin" not in result.stdout + result.stderr


def test_pin_in_uri_is_refused() -> None:
    with pytest.raises(KeySourceError, match="pin-value"):
        Pkcs11Uri.parse("pkcs11:token=t;object=k?module-path=/x.so&pin-value=1234")


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"object=seal": "object=khong-co"}, 503, "KEY_NOT_FOUND"),
        ({"token=demo-a-seal": "token=khong-co-token"}, 503, "KEY_TOKEN_NOT_FOUND"),
        ({"agency-a-hsm.cert.pem": "agency-a-seal.cert.pem"}, 422, "KEY_CERTIFICATE_MISMATCH"),
    ],
    ids=["missing-key-label", "missing-token", "certificate-of-another-key"],
)
def test_broken_hsm_profiles_have_their_own_codes_and_write_nothing(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    token: TokenKey,
    change: dict[str, str],
    status: int,
    code: str,
) -> None:
    from signing_service.store.models import SigningProfile

    pki = services.dev_pki
    assert pki is not None
    with services.db.transaction() as session:
        session.add(
            SigningProfile(
                agency_id=1,
                name="hsm-broken",
                level="B-B",
                key_uri=uri(token, pki, **change),
            )
        )
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers={"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"},
        data={"profile": "hsm-broken"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert_nothing_written(before, services)


def test_wrong_pin_profile_code(
    api: Any, services: Services, credentials: dict[str, Any], token: TokenKey, monkeypatch: Any
) -> None:
    from signing_service.store.models import SigningProfile

    pki = services.dev_pki
    assert pki is not None
    monkeypatch.setenv("WRONG_PIN", "0000-sai-ma-pin")
    with services.db.transaction() as session:
        session.add(
            SigningProfile(
                agency_id=1,
                name="hsm-wrong-pin",
                level="B-B",
                key_uri=uri(
                    token, pki, **{f"pin-source=file:{token.pin_file}": "pin-source=env:WRONG_PIN"}
                ),
            )
        )
    KeyCache().get(uri(token, pki), None)  # logged in with the right PIN first
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers={"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"},
        data={"profile": "hsm-wrong-pin"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (503, "KEY_PIN_INCORRECT")
    assert "0000-sai-ma-pin" not in response.text
    assert_nothing_written(before, services)
