"""Revocation data under the CA's name that the CA did not sign (red team 21c, R21C-1).

Anyone can append a ``/DSS`` to a B-T document holding a CRL "from another CA with the same
name" or an OCSP answer for the signer's serial signed by a responder of their own. The level
read B-LT (B-LTA with one public document timestamp) and the report listed the forged answers
as the CA's. Only the issuer's own word counts now (signing_service/verification/vouching.py);
pyHanko's own collection of the dev PKI's answers still makes B-LT.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from asn1crypto import crl as acrl
from asn1crypto import ocsp as aocsp
from asn1crypto import x509 as ax509
from cryptography import x509 as cx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp as cocsp
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation.dss import DocumentSecurityStore

from signing_service.pki.dev import DevPki
from signing_service.trust import TrustStore
from signing_service.verification.validate import Verifier
from tests.support.pdfs import make_pdf
from tests.test_other_tools import (
    REPO,
    document_timestamp,
    only_signature,
    sign,
    verify,
    with_dss,
)


@pytest.fixture(scope="module")
def pki(dev_pki: tuple[DevPki, int]) -> DevPki:
    return dev_pki[0]


@pytest.fixture(scope="module")
def offline(pki: DevPki) -> Verifier:
    """Fetches nothing: only what the document carries counts (what B-LT is for)."""
    trust = TrustStore.load(
        REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path, fetch_timeout=3
    )
    return Verifier(trust, allow_fetching=False)


NOW = dt.datetime.now(dt.UTC)
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _signer_cert(pdf: bytes) -> cx.Certificate:
    emb = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0]
    return cx.load_der_x509_certificate(emb.signer_cert.dump())


def _fake_ca(name: cx.Name) -> cx.Certificate:
    """'Another CA with the same name': the signer's issuer name, a key of our own."""
    return (
        cx.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(4242)
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(NOW + dt.timedelta(days=3000))
        .add_extension(cx.BasicConstraints(ca=True, path_length=None), True)
        .sign(KEY, hashes.SHA256())
    )


def _forged_crl(signer: cx.Certificate) -> acrl.CertificateList:
    crl = (
        cx.CertificateRevocationListBuilder()
        .issuer_name(signer.issuer)
        .last_update(NOW - dt.timedelta(hours=1))
        .next_update(NOW + dt.timedelta(days=7))
        .sign(KEY, hashes.SHA256())
    )
    return acrl.CertificateList.load(crl.public_bytes(serialization.Encoding.DER))


def _forged_ocsp(signer: cx.Certificate, ca: cx.Certificate) -> aocsp.OCSPResponse:
    """'good' for the signer's serial and issuer name, from a twin of the CA (another key),
    signed by that twin: no authority of the real CA."""
    twin = (
        cx.CertificateBuilder()
        .subject_name(signer.subject)
        .issuer_name(signer.issuer)
        .public_key(KEY.public_key())
        .serial_number(signer.serial_number)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=100))
        .sign(KEY, hashes.SHA256())
    )
    response = (
        cocsp.OCSPResponseBuilder()
        .add_response(
            cert=twin,
            issuer=ca,
            algorithm=hashes.SHA1(),
            cert_status=cocsp.OCSPCertStatus.GOOD,
            this_update=NOW - dt.timedelta(minutes=5),
            next_update=NOW + dt.timedelta(days=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(cocsp.OCSPResponderEncoding.HASH, ca)
        .certificates([ca])
        .sign(KEY, hashes.SHA256())
    )
    return aocsp.OCSPResponse.load(response.public_bytes(serialization.Encoding.DER))


def _with_forged_dss(pdf: bytes, *, crl: bool, ocsp: bool) -> bytes:
    signer = _signer_cert(pdf)
    ca = _fake_ca(signer.issuer)
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    DocumentSecurityStore.supply_dss_in_writer(
        writer,
        None,
        certs=[ax509.Certificate.load(ca.public_bytes(serialization.Encoding.DER))],
        ocsps=[_forged_ocsp(signer, ca)] if ocsp else [],
        crls=[_forged_crl(signer)] if crl else [],
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("crl", "ocsp", "stamped"),
    [(True, False, False), (False, True, False), (True, True, True)],
    ids=["crl-same-name", "ocsp-other-issuer", "both-then-document-timestamp"],
)
def test_forged_revocation_data_raises_no_level(
    pki: DevPki, offline: Verifier, crl: bool, ocsp: bool, stamped: bool
) -> None:
    genuine = sign(pki, make_pdf())
    forged = _with_forged_dss(genuine, crl=crl, ocsp=ocsp)
    if stamped:
        forged = document_timestamp(pki, forged)
    report = verify(offline, forged)
    sig = only_signature(report)
    assert sig["level"] == "B-T", sig["level"]
    assert all(item["source"] != "document" for item in sig.get("revocation_data") or []), sig[
        "revocation_data"
    ]


def test_the_ca_s_own_revocation_data_still_makes_b_lt(pki: DevPki, offline: Verifier) -> None:
    """The control: pyHanko's collection of the dev PKI's own answers (delegated OCSP
    responder included) is B-LT, and B-LTA with a document timestamp, listed as the
    document's."""
    lt = with_dss(pki, sign(pki, make_pdf()), vri_only=False)
    sig = only_signature(verify(offline, lt))
    assert sig["level"] == "B-LT"
    assert any(item["source"] == "document" for item in sig["revocation_data"])
    lta = only_signature(verify(offline, document_timestamp(pki, lt)))
    assert lta["level"] == "B-LTA"


def test_revocation_data_added_after_the_document_timestamp_is_not_b_lta(
    pki: DevPki, offline: Verifier
) -> None:
    """Red team 23a, R23A-3: a DSS holding only certificates, a document timestamp over it,
    then the revocation data in a later update. B-LTA means a document timestamp protects the
    validation data (ETSI EN 319 142-1 §6.4); only "some DSS before the timestamp" was asked,
    and this read B-LTA where EU DSS says LT. The control: the data before the timestamp."""
    signed = sign(pki, make_pdf())
    emb = PdfFileReader(io.BytesIO(signed)).embedded_signatures[0]
    writer = IncrementalPdfFileWriter(io.BytesIO(signed))
    DocumentSecurityStore.supply_dss_in_writer(writer, None, certs=[emb.signer_cert])
    out = io.BytesIO()
    writer.write(out)
    certs_only = out.getvalue()
    late = with_dss(pki, document_timestamp(pki, certs_only), vri_only=False)
    assert only_signature(verify(offline, late))["level"] == "B-LT"
    covered = document_timestamp(pki, with_dss(pki, certs_only, vri_only=False))
    assert only_signature(verify(offline, covered))["level"] == "B-LTA"
