"""Signing with a seal key held on a real SoftHSM2 token over PKCS#11, registered by the
operator through a configured module name; the PIN is given once at registration."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import update

from signing_service import errors
from signing_service._async import run_sync
from signing_service.pki.dev import DevPki
from signing_service.pki.softhsm import TokenKey
from signing_service.services.container import Services
from signing_service.services.keys import Pkcs11Material, register_key
from signing_service.services.keystore import KeyStore, binding
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys.base import KeySourceError
from signing_service.signing.keys.pkcs11 import Pkcs11Reference, open_reference
from signing_service.signing.levels import SignatureLevel
from signing_service.store.models import SigningKey
from signing_service.trust import TrustStore
from signing_service.verification.validate import Verifier
from tests.conftest import REPO
from tests.support.keys import AGENCY_A, profile
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot


@pytest.fixture
def token(hsm_key: TokenKey | None) -> TokenKey:
    if hsm_key is None:
        pytest.skip("SoftHSM2 is not installed (make test installs it)")
    return hsm_key


def material(token: TokenKey, pki: DevPki, **changes: Any) -> Pkcs11Material:
    values: dict[str, Any] = {
        "uri": f"pkcs11:token={token.token};object={token.key_label}",
        "module": "softhsm",
        "pin": token.pin_file.read_text().strip(),
        "certificate": pki.cert_path("agency-a-hsm").read_bytes(),
        "chain": pki.cert_path("interm").read_bytes(),
    }
    values.update(changes)
    return Pkcs11Material(**values)


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
    key = open_reference(
        token.module,
        Pkcs11Reference.parse(f"pkcs11:token={token.token};object={token.key_label}"),
        token.pin_file.read_text().strip(),
        pki.cert("agency-a-hsm"),
        (pki.cert("interm"),),
    )
    trust = TrustStore.load(REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path)

    def one(i: int) -> str:
        signed = run_sync(
            async_sign_pdf(make_pdf(text=f"doc {i}"), key, SignOptions(level=SignatureLevel.B_B))
        )
        return run_sync(Verifier(trust).async_verify(signed)).verdict.value

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(one, range(16))) == {"TOTAL_PASSED"}


@pytest.mark.parametrize("level", [SignatureLevel.B_B, SignatureLevel.B_T])
def test_each_certificate_embedded_once_in_the_first_reservation(
    dev_pki: tuple[DevPki, int], token: TokenKey, level: SignatureLevel
) -> None:
    """pyHanko's PKCS11Signer registers the signing certificate and its CMS builder adds it
    again: the CMS carried it twice, outgrew the reservation estimated from the key and its
    chain, and every HSM signature was made twice (the retry in a larger reservation). Our
    signer embeds the certificate once, and the first reservation holds the CMS."""
    from io import BytesIO

    from asn1crypto import cms
    from pyhanko.pdf_utils.reader import PdfFileReader

    from signing_service.signing.engine import estimate_signature_size
    from signing_service.signing.tsa import PooledHTTPTimeStamper, token_size

    pki, _ = dev_pki
    key = open_reference(
        token.module,
        Pkcs11Reference.parse(f"pkcs11:token={token.token};object={token.key_label}"),
        token.pin_file.read_text().strip(),
        pki.cert("agency-a-hsm"),
        (pki.cert("interm"),),
    )
    tsa = PooledHTTPTimeStamper(pki.tsa_url) if level is SignatureLevel.B_T else None
    for text in ("first", "second"):  # the second one takes the fast CMS path
        signed = run_sync(
            async_sign_pdf(make_pdf(text=text), key, SignOptions(level=level), timestamper=tsa)
        )
        embedded = PdfFileReader(BytesIO(signed)).embedded_signatures[0]
        ders = [c.chosen.dump() for c in embedded.signed_data["certificates"]]
        assert len(ders) == len(set(ders)) == 2  # the signer's and the intermediate
        tst = run_sync(token_size(tsa, "sha256")) if tsa is not None else None
        expected = estimate_signature_size(key.signing_cert, key.chain, "sha256", tst)
        assert len(embedded.pkcs7_content) == expected  # not the retry's larger reservation
        assert len(cms.ContentInfo.load(embedded.pkcs7_content, strict=False).dump()) < expected


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"uri": "pkcs11:token=khong-co-token;object=seal"}, "KEY_TOKEN_NOT_FOUND"),
        ({"uri": "pkcs11:token=demo-a-seal;object=khong-co-khoa"}, "KEY_NOT_FOUND"),
        ({"certificate": "agency-a-seal"}, "KEY_CERTIFICATE_MISMATCH"),
        ({"pin": "0000-sai-ma-pin"}, "KEY_PIN_INCORRECT"),
        ({"module": "khong-co"}, "UNKNOWN_PKCS11_MODULE"),
        ({"uri": "pkcs11:token=demo-a-seal;id=zz"}, "INVALID_KEY_REFERENCE"),
    ],
    ids=["missing-token", "missing-key", "another-key-cert", "wrong-pin", "module", "non-hex-id"],
)
def test_bad_registrations_refused_with_their_codes(
    services: Services, token: TokenKey, change: dict[str, Any], code: str
) -> None:
    pki = services.dev_pki
    assert pki is not None
    if "certificate" in change:
        change = {"certificate": pki.cert_path(change["certificate"]).read_bytes()}
    before = snapshot(services)
    sealed = sorted(services.settings.key_store_dir.glob("*.sealed"))
    with pytest.raises(errors.ServiceError) as info:
        register_key(
            services,
            agency_code=AGENCY_A,
            name="hsm-2",
            material=material(token, pki, **change),
            actor="test",
        )
    assert info.value.code == code
    assert "0000-sai-ma-pin" not in str(info.value)
    assert_nothing_written(before, services)
    with services.db.transaction() as session:
        assert session.query(SigningKey).filter_by(name="hsm-2").count() == 0
    assert sorted(services.settings.key_store_dir.glob("*.sealed")) == sealed


def test_wrong_pin_refused_by_the_token(token: TokenKey) -> None:
    """In a fresh process (nobody logged in), the token itself rejects the PIN."""
    import os
    import subprocess
    import sys

    code = (
        "from signing_service.signing.keys.base import KeySourceError\n"
        "from signing_service.signing.keys.pkcs11 import Pkcs11Reference, open_reference\n"
        "try:\n"
        f"    open_reference({token.module!r}, Pkcs11Reference.parse("
        f"'pkcs11:token={token.token};object={token.key_label}'), '0000-sai-ma-pin', None, ())\n"
        "except KeySourceError as e:\n"
        "    print(e.reason, e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=os.environ,
        cwd=REPO,
        timeout=60,
    )
    assert "pin_incorrect" in result.stdout, result.stdout + result.stderr
    assert "0000-sai-ma-pin" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "uri",
    [
        "pkcs11:token=t;object=k?module-path=/tmp/evil.so",
        "pkcs11:token=t;object=k?pin-value=1234",
        "pkcs11:token=t;object=k?pin-source=file:/etc/shadow",
        "pkcs11:token=t;object=k;module-path=/tmp/evil.so",
        "pkcs11:token=t;id=not-hex",
        "pkcs11:token=t;id=%zz",
        "pkcs11:token=t\x00;object=k",
        "pkcs11:token=" + "t" * 40 + ";object=k",
        "pkcs11:object=k",
        "pkcs11:token=t",
        "file:/dev/zero",
    ],
)
def test_references_name_token_and_key_only(uri: str) -> None:
    """Module paths, PIN sources and certificate paths never come from a reference."""
    with pytest.raises(KeySourceError) as info:
        Pkcs11Reference.parse(uri)
    assert info.value.reason == "invalid_reference"


def test_ids_hex_or_percent_encoded() -> None:
    assert Pkcs11Reference.parse("pkcs11:token=t;id=01aB").id == b"\x01\xab"
    assert Pkcs11Reference.parse("pkcs11:token=t;id=%01%ab").id == b"\x01\xab"


def _registered(services: Services) -> SigningKey:
    with services.db.transaction() as session:
        return session.query(SigningKey).filter_by(name="agency-a-hsm-seal").one()


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"object": "khong-co"}, 503, "KEY_NOT_FOUND"),
        ({"token": "khong-co-token"}, 503, "KEY_TOKEN_NOT_FOUND"),
        ({"certificate": "agency-a-seal"}, 422, "KEY_CERTIFICATE_MISMATCH"),
        ({"module": "bo-cau-hinh"}, 503, "SIGNING_KEY_UNAVAILABLE"),
    ],
    ids=["key-gone", "token-gone", "certificate-of-another-key", "module-unconfigured"],
)
def test_hsm_changed_since_registration_has_its_own_codes_and_writes_nothing(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    token: TokenKey,
    change: dict[str, str],
    status: int,
    code: str,
) -> None:
    """The key was registered fine; then the HSM or the configuration changed."""
    pki = services.dev_pki
    assert pki is not None
    row = _registered(services)
    values: dict[str, Any] = {}
    if "certificate" in change:
        values["certificate"] = pki.cert(change["certificate"]).dump()
    else:
        values["reference"] = {**row.reference, **change}
    with services.db.transaction() as session:
        session.execute(update(SigningKey).where(SigningKey.id == row.id).values(**values))
    services.keys.forget(row.uid)
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers={"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"},
        data={"profile": "agency-a-hsm-seal", "level": "B-B"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert "softhsm" not in response.text and "demo-a-seal" not in response.text
    assert_nothing_written(before, services)


def test_pin_changed_since_registration(
    api: Any, services: Services, credentials: dict[str, Any], token: TokenKey
) -> None:
    """The sealed PIN no longer matches the token's (the HSM officer changed it)."""
    row = _registered(services)
    bound = binding(row.uid, AGENCY_A, "pkcs11")
    wrapped = KeyStore.of(services).put(row.uid, bound, b"0000-sai-ma-pin")
    with services.db.transaction() as session:
        session.execute(
            update(SigningKey).where(SigningKey.id == row.id).values(wrapped_key=wrapped)
        )
    services.keys.forget(row.uid)
    profile(services, "hsm-b-b", "agency-a-hsm-seal")
    # A session logged in with the right PIN is open: the wrong one must still be refused.
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers={"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"},
        data={"profile": "hsm-b-b"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (503, "KEY_PIN_INCORRECT")
    assert "0000-sai-ma-pin" not in response.text
    assert_nothing_written(before, services)


def test_session_lost_is_reopened(dev_pki: tuple[DevPki, int], token: TokenKey) -> None:
    """The HSM restarts under a running service (here: the library is re-initialised, which
    invalidates every session): the next signature logs in again instead of failing until the
    service restarts. In a process of its own, so the test's other sessions are not lost."""
    import os
    import subprocess
    import sys

    pki, _ = dev_pki
    code = f"""
import pkcs11
from signing_service._async import run_sync
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys.pkcs11 import Pkcs11Reference, open_reference
from signing_service.signing.levels import SignatureLevel
from signing_service.services.keys import load_certificates
from tests.support.pdfs import make_pdf

key = open_reference(
    {token.module!r},
    Pkcs11Reference.parse("pkcs11:token={token.token};object={token.key_label}"),
    open({str(token.pin_file)!r}).read().strip(),
    load_certificates(open({str(pki.cert_path("agency-a-hsm"))!r}, "rb").read())[0],
    (),
)
options = SignOptions(level=SignatureLevel.B_B)
run_sync(async_sign_pdf(make_pdf(), key, options))
pkcs11.lib({token.module!r}).reinitialize()
signed = run_sync(async_sign_pdf(make_pdf(), key, options))
print("signed again", len(signed))
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=os.environ,
        cwd=REPO,
        timeout=120,
    )
    assert "signed again" in result.stdout, result.stdout + result.stderr
