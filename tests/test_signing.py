"""Sign at every PAdES level and verify; the signer checks refuse bad certificates."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime
from io import BytesIO
from typing import Any

import pytest
from asn1crypto import cms, crl, ocsp, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter
from sqlalchemy import select

from signing_service import errors
from signing_service.services.container import Services
from signing_service.services.documents import get_document, read_content
from signing_service.services.signing import sign_document
from signing_service.services.verification import verify_document
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.store.models import Agency
from signing_service.verification.messages import message
from tests.support.keys import profile as add_profile
from tests.support.keys import store_without_checks
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot


def agency(services: Services, code: str = "000.00.12.H12") -> Agency:
    with services.db.transaction() as session:
        found = session.scalars(select(Agency).where(Agency.code == code)).one()
    return found


def signed_bytes(services: Services, level: str, pdf: bytes | None = None) -> bytes:
    a = agency(services)
    result = sign_document(
        services, a, profile_name="agency-a-seal", pdf=pdf or make_pdf(), level=level, actor="test"
    )
    return read_content(services, get_document(services, a.id, result.document.id))


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT", "B-LTA"])
def test_each_level_verifies_total_passed(services: Services, level: str) -> None:
    signed = signed_bytes(services, level)
    report = verify_document(services, signed, actor="test")
    assert report["verdict"] == "TOTAL_PASSED", report
    sig = report["signatures"][0]
    assert sig["type"] == "signature"
    assert sig["level"] == level
    assert sig["signer"]["common_name"] == "Sở Tư pháp tỉnh Demo A"
    assert sig["signer"]["subject"] == (
        "Quốc gia: VN; Địa phương: Demo A; Tổ chức: Sở Tư pháp tỉnh Demo A; "
        "Tên: Sở Tư pháp tỉnh Demo A"
    )
    assert sig["signer"]["profile"] == "organization"  # an agency seal: CN equal to O
    assert sig["category"] == "development"
    assert sig["trust_anchor"]["name"].startswith("Dev Root CA")
    assert [c["subject"].split("Tên: ")[-1] for c in sig["chain"]] == [
        "Sở Tư pháp tỉnh Demo A",
        "Dev CA phục vụ cơ quan nhà nước",
        "Dev Root CA (chỉ dùng thử nghiệm)",
    ]
    assert sig["validation_time"] == report["validation_time"]
    for name in ("integrity", "modifications", "trust", "revocation", "algorithms"):
        assert sig["checks"][name]["status"] == "PASSED", (name, sig["checks"][name])
    if level == "B-B":
        assert sig["checks"]["timestamp"]["status"] == "NOT_APPLICABLE"
        assert sig["signing_time_source"] == "claimed"
    else:
        assert sig["checks"]["timestamp"]["status"] == "PASSED"
        assert sig["signing_time_source"] == "timestamp"
        assert sig["signing_time"].endswith("+07:00")
        assert sig["best_signature_time"] == sig["signing_time"]
        assert sig["best_signature_time_proof"] == "signature_timestamp"
        assert [t["type"] for t in sig["timestamps"]] == ["signature"]
        assert sig["timestamps"][0]["authority"] == "Dev Time Stamping Authority"
    if level in ("B-LT", "B-LTA"):
        assert any(r["source"] == "document" for r in sig["revocation_data"]), sig
    if level == "B-LTA":
        assert [s["type"] for s in report["signatures"]] == ["signature", "document_timestamp"]
        assert report["signatures"][1]["indication"] == "TOTAL_PASSED"


def test_lt_document_keeps_its_revocation_data_offline(services: Services) -> None:
    """B-LT embeds OCSP/CRL answers: verification without network access still passes."""
    from signing_service.verification.validate import Verifier

    signed = signed_bytes(services, "B-LT")
    offline = Verifier(services.trust, allow_fetching=False)
    report = asyncio.run(offline.async_verify(signed)).to_dict()
    assert report["verdict"] == "TOTAL_PASSED", report
    # The same B-B document offline has no revocation evidence: a warning, never a pass.
    bb = signed_bytes(services, "B-B")
    report = asyncio.run(offline.async_verify(bb)).to_dict()
    assert report["verdict"] == "INDETERMINATE"
    assert report["signatures"][0]["checks"]["revocation"]["code"] == "REVOCATION_UNKNOWN"


def _add_profile(services: Services, name: str, key_label: str) -> Agency:
    """A profile whose key passed its checks when registered and has gone bad since."""
    a = agency(services)
    pki = services.dev_pki
    assert pki is not None
    store_without_checks(services, key_label, pki.p12_path(key_label))
    add_profile(services, name, key_label)
    return a


@pytest.mark.parametrize(
    ("key_label", "code"),
    [
        ("revoked-signer", "SIGNER_CERT_REVOKED"),
        ("expired-signer", "SIGNER_CERT_EXPIRED"),
    ],
)
def test_bad_signer_refused_and_nothing_stored(
    services: Services, key_label: str, code: str
) -> None:
    a = _add_profile(services, f"bad-{key_label}", key_label)
    before = snapshot(services)
    with pytest.raises(errors.ServiceError) as info:
        sign_document(services, a, profile_name=f"bad-{key_label}", pdf=make_pdf(), actor="test")
    assert info.value.code == code
    assert "thu hồi" in info.value.message or "hết hạn" in info.value.message
    assert_nothing_written(before, services)


def test_revoked_signer_is_flagged_at_verification(services: Services) -> None:
    """A document signed with a revoked key (bypassing our pre-check, as another tool would)."""
    pki = services.dev_pki
    assert pki is not None
    key = load_pkcs12_file(pki.p12_path("revoked-signer"), DEV_KEY_PASSPHRASE.encode())
    signed = asyncio.run(async_sign_pdf(make_pdf(), key, SignOptions(level=SignatureLevel.B_B)))
    report = verify_document(services, signed, actor="test")
    # Revoked, and nothing proves when it was signed (B-B: the signing time is the signer's
    # own claim): ETSI EN 319 102-1 says INDETERMINATE / REVOKED_NO_POE, never a pass.
    # (With a content timestamp after the revocation it is TOTAL_FAILED / REVOKED:
    # tests/test_long_term.py.)
    assert report["verdict"] == "INDETERMINATE"
    sig = report["signatures"][0]
    assert sig["checks"]["revocation"]["status"] == "INDETERMINATE"
    assert sig["checks"]["revocation"]["code"] == "REVOKED_NO_POE"
    assert "2025-06-01" in sig["checks"]["revocation"]["message"]
    assert sig["sub_indication"] == "REVOKED_NO_POE"
    assert sig["checks"]["integrity"]["status"] == "PASSED"


def test_ecdsa_seal_signs_and_verifies(services: Services) -> None:
    b = agency(services, "000.00.31.H26")
    result = sign_document(
        services, b, profile_name="agency-b-seal", pdf=make_pdf(), level="B-T", actor="test"
    )
    signed = read_content(services, get_document(services, b.id, result.document.id))
    report = verify_document(services, signed, actor="test")
    assert report["verdict"] == "TOTAL_PASSED"
    assert report["signatures"][0]["signer"]["common_name"] == "UBND xã Demo B"


def test_second_signature_keeps_first_valid(services: Services) -> None:
    once = signed_bytes(services, "B-T")
    twice = signed_bytes(services, "B-T", pdf=once)
    report: dict[str, Any] = verify_document(services, twice, actor="test")
    assert report["verdict"] == "TOTAL_PASSED"
    assert [s["field"] for s in report["signatures"]] == ["Signature1", "Signature2"]
    assert report["signatures"][0]["checks"]["modifications"]["code"] == "ALLOWED_FORM_FILLING"


def _tst_time(signed_data: cms.SignedData) -> datetime:
    return signed_data["encap_content_info"]["content"].parsed["gen_time"].native


def _dss(data: bytes) -> tuple[list[ocsp.OCSPResponse], list[crl.CertificateList]]:
    dss = PdfFileReader(BytesIO(data), strict=False).root["/DSS"]
    ocsps = [ocsp.OCSPResponse.load(r.get_object().data) for r in dss.get("/OCSPs", [])]
    crls = [crl.CertificateList.load(r.get_object().data) for r in dss.get("/CRLs", [])]
    return ocsps, crls


def _answers_after(
    ocsps: list[ocsp.OCSPResponse], crls: list[crl.CertificateList], moment: datetime
) -> set[tuple[bytes, int]]:
    """(SHA-1 of the issuer name, serial) of the certificates with an OCSP answer produced
    no earlier than ``moment``'s second; and every CRL must be dated no earlier than that second
    (OCSP and CRL times are whole seconds)."""
    for c in crls:
        assert c["tbs_cert_list"]["this_update"].native >= moment.replace(microsecond=0), c
    later: set[tuple[bytes, int]] = set()
    for response in ocsps:
        data = response.basic_ocsp_response["tbs_response_data"]
        for single in data["responses"]:
            cert_id = single["cert_id"]
            assert cert_id["hash_algorithm"]["algorithm"].native == "sha1"
            # OCSP times are whole seconds too: an answer fetched in the timestamp's second
            # carries that second.
            second = moment.replace(microsecond=0)
            if data["produced_at"].native >= second and single["this_update"].native >= second:
                later.add((cert_id["issuer_name_hash"].native, cert_id["serial_number"].native))
    return later


def _cert_id(cert: x509.Certificate) -> tuple[bytes, int]:
    return hashlib.sha1(cert.issuer.dump()).digest(), cert.serial_number


def test_long_term_data_is_fetched_after_the_timestamps(services: Services) -> None:
    """ETSI EN 319 102-1 judges revocation data against the best signature time; EU DSS warns
    when none is later than the signature timestamp. Each certificate below the root (signer,
    intermediate, TSA) must have an OCSP answer produced after the signature timestamp, and for
    B-LTA the TSA one after the document timestamp too. The second signature runs while the
    signer check's answer is cached (5 minutes): its data must be fresh as well."""
    pki = services.dev_pki
    assert pki is not None
    must_cover = {_cert_id(pki.cert(label)) for label in ("agency-a-seal", "interm", "tsa")}
    for level in ("B-LT", "B-LTA", "B-LT"):
        signed = signed_bytes(services, level)
        reader = PdfFileReader(BytesIO(signed), strict=False)
        signature = reader.embedded_signatures[0]
        (tst,) = list(extract_tst_data_iter(signature.signer_info, signed=False))
        ocsps, crls = _dss(signed)
        later = _answers_after(ocsps, crls, _tst_time(tst))
        assert must_cover <= later, (level, must_cover - later)
        if level == "B-LTA":
            doc_ts = reader.embedded_signatures[1]
            later = _answers_after(ocsps, crls, _tst_time(doc_ts.signed_data))
            assert _cert_id(pki.cert("tsa")) in later


def test_revocation_data_is_named_once_for_the_right_certificate(services: Services) -> None:
    """Serial numbers are unique per issuer only (the dev seal and the dev intermediate share
    one): OCSP answers are matched by issuer too, each listed once, the responder named."""
    signed = signed_bytes(services, "B-LT")
    report = verify_document(services, signed, actor="test")
    sig = report["signatures"][0]
    entries = [
        (r["type"], r["source"], r["certificate"], r["issued_at"]) for r in sig["revocation_data"]
    ]
    assert len(entries) == len(set(entries)), sig["revocation_data"]
    chain = [c["subject"] for c in sig["chain"]]
    for item in sig["revocation_data"]:
        assert item["certificate"] in chain[:-1]  # the anchor needs none
        assert item["issuer"] and item["issuer"] != "OCSP"
    about_signer = [r for r in sig["revocation_data"] if r["certificate"] == chain[0]]
    assert about_signer and all(r["status"] in ("good", "not_listed") for r in about_signer)


def test_validation_time_beyond_the_documents_evidence_is_explained(services: Services) -> None:
    """Validated as of a moment long after signing, with nothing fetched (a chosen validation
    time uses only what the document carries) and the dev PKI's OCSP answers valid for minutes:
    undecided, and the report says why — the timestamp is not called untrusted."""
    from datetime import UTC, timedelta

    signed = signed_bytes(services, "B-LTA")
    later = datetime.now(UTC) + timedelta(days=365)
    report = verify_document(services, signed, actor="test", validation_time=later)
    assert report["verdict"] == "INDETERMINATE", report
    sig = report["signatures"][0]
    assert sig["checks"]["timestamp"]["code"] == "TIMESTAMP_STATUS_UNKNOWN"
    assert sig["signing_time_source"] == "timestamp_unverified"
    assert sig["checks"]["revocation"]["code"] == "REVOCATION_UNKNOWN"


def test_validation_time_before_signing_is_pointed_out(services: Services) -> None:
    from datetime import UTC, timedelta

    signed = signed_bytes(services, "B-T")
    earlier = datetime.now(UTC) - timedelta(days=30)
    report = verify_document(services, signed, actor="test", validation_time=earlier)
    assert report["verdict"] == "INDETERMINATE"
    assert "SIGNED_AFTER_VALIDATION_TIME" in [w["code"] for w in report["warnings"]]
    # The reason given is that the signature did not exist yet, never "try later" (new user
    # 18 #7: no later attempt changes this answer).
    assert report["sub_indication"] == "NO_POE", report
    sig = report["signatures"][0]
    assert sig["sub_indication"] == "NO_POE"
    assert sig["summary"] == message("SIGNED_AFTER_VALIDATION_TIME")
    assert "chưa tồn tại" in report["message"]
