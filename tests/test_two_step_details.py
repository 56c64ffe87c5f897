"""Two-step details (issue 10): ECDSA values as raw r‖s, and one claimed signing time.

A token returns an ECDSA signature as raw ``r‖s`` (PKCS#11 ``CKM_ECDSA``, CSC); CMS embeds the
DER ``Ecdsa-Sig-Value``. The stamp's time and the signature's claimed signing time (/M; PAdES
puts no signing-time attribute in the CMS) are one value, fixed at step 1.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms
from cryptography import x509 as cx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.generic import parse_pdf_date as parse_date
from pyhanko.pdf_utils.reader import PdfFileReader

from signing_service.services.container import Services
from signing_service.signing.rawsig import der_ecdsa_signature, raw_signature_valid
from tests.support.keys import AGENCY_B, profile, store_officer_without_checks
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot
from tests.support.testpki import issue_certificate, to_asn1
from tests.test_external import Token

B_OFFICER = "b-officer-ecdsa"
B_PROFILE = "agency-b-two-step"


def _headers_b(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][1]['api_key']}"}


@pytest.fixture
def ecdsa_officer(services: Services) -> bytes:
    """Agency B's ECDSA P-256 dev certificate registered as an officer's, and a two-step
    profile with a visible stamp using it: an officer whose token holds an ECDSA key."""
    assert services.dev_pki is not None
    pem = services.dev_pki.cert_path("agency-b-seal").read_bytes()
    store_officer_without_checks(services, B_OFFICER, pem, agency_code=AGENCY_B)
    profile(
        services,
        B_PROFILE,
        B_OFFICER,
        agency_code=AGENCY_B,
        two_step=True,
        appearance={"heading": "Người ký"},
    )
    return pem


def _start(api: Any, credentials: dict[str, Any], pem: bytes, level: str) -> dict[str, Any]:
    started = api.post(
        "/v1/signatures/external",
        headers=_headers_b(credentials),
        data={"profile": B_PROFILE, "level": level},
        files={
            "file": ("quyet-dinh.pdf", make_pdf(), "application/pdf"),
            "certificate": ("officer.pem", pem),
        },
    )
    assert started.status_code == 201, started.text
    session: dict[str, Any] = started.json()
    assert session["signature_algorithm"] == "ecdsa"
    return session


def _token(services: Services, form: str) -> Token:
    assert services.dev_pki is not None
    return Token(str(services.dev_pki.p12_path("agency-b-seal")), form)


@pytest.mark.parametrize("form", ["raw", "der"])
def test_ecdsa_token_value_raw_or_der_is_accepted(
    api: Any, services: Services, credentials: dict[str, Any], ecdsa_officer: bytes, form: str
) -> None:
    """Issue 10: raw r‖s (64 bytes for P-256) was refused as EXTERNAL_SIGNATURE_INVALID."""
    session = _start(api, credentials, ecdsa_officer, "B-T")
    token = _token(services, form)
    try:
        value = token.sign_digest(session["digest"])
    finally:
        token.close()
    raw = base64.b64decode(value)
    if form == "raw":
        assert len(raw) == 64
    else:
        # DER: a SEQUENCE of two INTEGERs, up to 72 bytes for P-256, shorter when r or s has
        # leading zero bytes (one signature in ~128); the length alone flaked.
        assert raw[0] == 0x30 and len(raw) <= 72
        utils.decode_dss_signature(raw)
    done = api.post(
        session["complete_url"], headers=_headers_b(credentials), json={"signature": value}
    )
    assert done.status_code == 201, done.text
    signed = api.get(done.json()["document"]["download_url"], headers=_headers_b(credentials))
    report = api.post("/v1/verifications", files={"file": ("s.pdf", signed.content)}).json()
    assert report["verdict"] == "TOTAL_PASSED", report
    # The CMS carries the DER form, whatever the token returned.
    reader = PdfFileReader(__import__("io").BytesIO(signed.content))
    signer_info = reader.embedded_signatures[0].signer_info
    r, s = utils.decode_dss_signature(signer_info["signature"].native)
    assert signer_info["signature"].native == utils.encode_dss_signature(r, s)


def test_raw_ecdsa_of_another_key_or_wrong_length_is_refused(
    api: Any, services: Services, credentials: dict[str, Any], ecdsa_officer: bytes
) -> None:
    session = _start(api, credentials, ecdsa_officer, "B-B")
    other = ec.generate_private_key(ec.SECP256R1())
    digest = base64.b64decode(session["digest"])
    r, s = utils.decode_dss_signature(
        other.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    )
    wrong_key = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    token = _token(services, "raw")
    try:
        good = base64.b64decode(token.sign_digest(session["digest"]))
    finally:
        token.close()
    before = snapshot(services)
    for value in (wrong_key, good[:63], good + b"\x00", bytes(64)):
        done = api.post(
            session["complete_url"],
            headers=_headers_b(credentials),
            json={"signature": base64.b64encode(value).decode()},
        )
        assert (done.status_code, done.json()["code"]) == (422, "EXTERNAL_SIGNATURE_INVALID")
    assert_nothing_written(before, services)
    # The session is still usable with the right value.
    done = api.post(
        session["complete_url"],
        headers=_headers_b(credentials),
        json={"signature": base64.b64encode(good).decode()},
    )
    assert done.status_code == 201, done.text


@pytest.mark.parametrize(
    ("curve", "raw_size"),
    [(ec.SECP256R1(), 64), (ec.SECP384R1(), 96), (ec.SECP521R1(), 132)],
    ids=["P-256", "P-384", "P-521"],
)
def test_raw_to_der_per_curve(curve: ec.EllipticCurve, raw_size: int) -> None:
    key = ec.generate_private_key(curve)
    name = cx.Name([cx.NameAttribute(NameOID.COMMON_NAME, "Cán bộ thử nghiệm")])
    now = datetime.now(UTC)
    cert = to_asn1(
        issue_certificate(
            name,
            key,
            name,
            key,
            not_before=now - timedelta(days=1),
            not_after=now + timedelta(days=1),
        )
    )
    data = b"signed attributes"
    # Leading zero bytes of r or s must survive: sign until a short r appears now and then.
    for _ in range(64):
        der = key.sign(data, ec.ECDSA(hashes.SHA256()))
        r, s = utils.decode_dss_signature(der)
        size = raw_size // 2
        raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        assert len(raw) == raw_size
        converted = der_ecdsa_signature(cert, raw)
        assert converted == der
        assert raw_signature_valid(cert, data, converted)
        assert der_ecdsa_signature(cert, der) == der  # DER passes unchanged
    assert not raw_signature_valid(cert, data, raw)  # raw itself is not what CMS takes


def _stamp_time(pdf: Path) -> datetime:
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(
        r"Thời gian ký: (\d\d:\d\d:\d\d) ngày (\d\d)/(\d\d)/(\d{4}) \(\+07:00\)", text
    )
    assert found, text
    clock, day, month, year = found.groups()
    return datetime.fromisoformat(f"{year}-{month}-{day}T{clock}+07:00")


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_stamp_time_equals_claimed_signing_time_fixed_at_step_1(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    ecdsa_officer: bytes,
    tmp_path: Path,
) -> None:
    """Issue 10: the stamp showed step 1's time and the signature's time came later. Now the
    stamp text, /M and the answer's signed_at are one value from step 1, however long the
    officer takes; the B-T signature timestamp (step 2) is later."""
    before_start = datetime.now(UTC).replace(microsecond=0)
    session = _start(api, credentials, ecdsa_officer, "B-T")
    after_start = datetime.now(UTC)
    time.sleep(2.2)  # the officer finds the token
    token = _token(services, "raw")
    try:
        value = token.sign_digest(session["digest"])
    finally:
        token.close()
    done = api.post(
        session["complete_url"], headers=_headers_b(credentials), json={"signature": value}
    )
    assert done.status_code == 201, done.text
    signed = api.get(done.json()["document"]["download_url"], headers=_headers_b(credentials))
    pdf = tmp_path / "signed.pdf"
    pdf.write_bytes(signed.content)

    stamp = _stamp_time(pdf)
    assert stamp.utcoffset() == timedelta(hours=7)
    embedded = PdfFileReader(pdf.open("rb")).embedded_signatures[0]
    claimed = parse_date(str(embedded.sig_object["/M"]))
    signed_at = datetime.fromisoformat(done.json()["signed_at"])
    assert stamp == claimed == signed_at
    assert before_start <= claimed <= after_start
    # PAdES baseline: the claimed time is /M; the CMS has no signing-time attribute.
    attrs = embedded.signer_info["signed_attrs"]
    assert "signing_time" not in {a["type"].native for a in attrs}
    # The signature timestamp is step 2's, after the officer's pause.
    (token,) = [
        value
        for attr in embedded.signer_info["unsigned_attrs"]
        if attr["type"].native == "signature_time_stamp_token"
        for value in attr["values"]
    ]
    assert isinstance(token, cms.ContentInfo)
    tst_info = token["content"]["encap_content_info"]["content"].parsed
    assert tst_info["gen_time"].native >= claimed + timedelta(seconds=2)


def test_one_step_stamp_time_equals_claimed_signing_time(
    api: Any, services: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    """The same rule in one step: pyHanko took /M after the stamp was drawn (milliseconds
    apart, a different second now and then); both are now one whole second."""
    headers = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    for i in range(3):
        done = api.post(
            "/v1/signatures",
            headers=headers,
            data={"profile": "agency-a-seal", "level": "B-B"},
            files={"file": ("a.pdf", make_pdf(), "application/pdf")},
        )
        assert done.status_code == 201, done.text
        signed = api.get(done.json()["document"]["download_url"], headers=headers)
        pdf = tmp_path / f"signed{i}.pdf"
        pdf.write_bytes(signed.content)
        embedded = PdfFileReader(pdf.open("rb")).embedded_signatures[0]
        claimed = parse_date(str(embedded.sig_object["/M"]))
        assert _stamp_time(pdf) == claimed == datetime.fromisoformat(done.json()["signed_at"])


def test_two_step_result_code_assigned_at_completion(
    api: Any, services: Services, credentials: dict[str, Any], ecdsa_officer: bytes
) -> None:
    """``result_code=auto`` at step 1; the number is taken when the signed document is stored
    (step 2), so an abandoned session uses none."""
    dossier = "000.00.31.H26-261127-0007"

    def begin() -> dict[str, Any]:
        started = api.post(
            "/v1/signatures/external",
            headers=_headers_b(credentials),
            data={
                "profile": B_PROFILE,
                "level": "B-B",
                "dossier_code": dossier,
                "result_code": "auto",
            },
            files={
                "file": ("kq.pdf", make_pdf(), "application/pdf"),
                "certificate": ("officer.pem", ecdsa_officer),
            },
        )
        assert started.status_code == 201, started.text
        return dict(started.json())

    _abandoned = begin()
    session = begin()
    token = _token(services, "raw")
    try:
        value = token.sign_digest(session["digest"])
    finally:
        token.close()
    done = api.post(
        session["complete_url"], headers=_headers_b(credentials), json={"signature": value}
    )
    assert done.status_code == 201, done.text
    assert done.json()["document"]["result_code"] == f"{dossier}-KQ1"
    assert done.json()["document"]["dossier_code"] == dossier
