"""A forgery made without the signer's key (red team 23a, R23A-1).

A real agency's CMS is moved onto another document: its signed message-digest attribute is
replaced by the new document's digest, which breaks the signature value, and its content-type
attribute is changed or removed, or its signature algorithm identifier (not covered by the
signature) replaced by one nobody supports. The integrity check fell back to "algorithm not
supported", compared only the digest the forger wrote, and read INDETERMINATE naming the agency;
EU DSS says TOTAL_FAILED / SIG_CRYPTO_FAILURE. The signature value is now tried in every case.
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

import pytest
from asn1crypto import algos, cms
from pyhanko.pdf_utils.reader import PdfFileReader

from signing_service.pki.dev import DevPki
from signing_service.verification.validate import Verifier
from tests.support.pdfs import make_pdf
from tests.support.verifiers import dev_verifier
from tests.test_other_tools import only_signature, sign, simple_signer, verify


@pytest.fixture(scope="module")
def pki(dev_pki: tuple[DevPki, int]) -> DevPki:
    return dev_pki[0]


@pytest.fixture(scope="module")
def verifier(pki: DevPki) -> Verifier:
    return dev_verifier(pki, fetching=False, intermediate=True)


@pytest.fixture(scope="module")
def online(pki: DevPki) -> Verifier:
    """Fetches the dev PKI's OCSP/CRL answers (its server runs for the session)."""
    return dev_verifier(pki, fetching=True, intermediate=True)


def _contents_span(pdf: bytes) -> tuple[int, int]:
    match = list(re.finditer(rb"/Contents\s*<([0-9a-fA-F]+)>", pdf))[-1]
    return match.start(1), match.end(1)


def _byte_range_digest(pdf: bytes) -> bytes:
    found = list(re.finditer(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", pdf))
    a, b, c, d = (int(x) for x in found[-1].groups())
    return hashlib.sha256(pdf[a : a + b] + pdf[c : c + d]).digest()


def _forge(genuine: bytes, carrier: bytes, change: str) -> bytes:
    """``carrier`` (signed by anyone) with ``genuine``'s CMS in its /Contents, the message
    digest replaced by the carrier's and one more thing changed (``change``)."""
    signed = PdfFileReader(io.BytesIO(genuine)).embedded_signatures[0].signed_data
    info = signed["signer_infos"][0]
    replaced = ("message_digest", "content_type")
    attrs = [a for a in info["signed_attrs"] if a["type"].native not in replaced]
    attrs.append(
        cms.CMSAttribute({"type": "message_digest", "values": [_byte_range_digest(carrier)]})
    )
    if change == "content-type-other":
        attrs.append(cms.CMSAttribute({"type": "content_type", "values": ["signed_data"]}))
    elif change != "content-type-missing":
        attrs.append(cms.CMSAttribute({"type": "content_type", "values": ["data"]}))
    algorithm = info["signature_algorithm"]
    if change == "algorithm-unknown":
        algorithm = algos.SignedDigestAlgorithm({"algorithm": "1.2.3.4.5.6.7"})
    fields = {
        "version": info["version"],
        "sid": info["sid"],
        "digest_algorithm": info["digest_algorithm"],
        "signed_attrs": cms.CMSAttributes(attrs),
        "signature_algorithm": algorithm,
        "signature": info["signature"],
    }
    if info["unsigned_attrs"].native:
        fields["unsigned_attrs"] = info["unsigned_attrs"]
    forged_info = cms.SignerInfo(fields)
    data = cms.SignedData(
        {
            "version": signed["version"],
            "digest_algorithms": signed["digest_algorithms"],
            "encap_content_info": signed["encap_content_info"],
            "certificates": signed["certificates"],
            "signer_infos": [forged_info],
        }
    )
    blob = cms.ContentInfo({"content_type": "signed_data", "content": data}).dump().hex().encode()
    start, end = _contents_span(carrier)
    assert len(blob) <= end - start
    return carrier[:start] + blob + b"0" * (end - start - len(blob)) + carrier[end:]


@pytest.mark.parametrize(
    "change",
    ["content-type-other", "content-type-missing", "algorithm-unknown", "digest-only"],
)
def test_a_cms_moved_onto_another_document_fails(
    pki: DevPki, verifier: Verifier, change: str
) -> None:
    genuine = sign(pki, make_pdf(text="Quyet dinh 23: ho tro 1.000.000 VND"), timestamp=False)
    carrier = sign(
        pki,
        make_pdf(text="Quyet dinh 23: ho tro 9.000.000.000 VND"),
        timestamp=False,
        signer=simple_signer(pki, "agency-b-seal"),
    )
    forged = _forge(genuine, carrier, change)
    sig: dict[str, Any] = only_signature(verify(verifier, forged))
    assert sig["indication"] == "TOTAL_FAILED", (sig["indication"], sig["checks"]["integrity"])
    assert sig["checks"]["integrity"]["code"] == "SIGNATURE_VALUE_INVALID"
    assert sig["sub_indication"] == "SIG_CRYPTO_FAILURE"


def test_the_genuine_signature_still_passes(pki: DevPki, verifier: Verifier) -> None:
    """The control: the same document as signed."""
    genuine = sign(pki, make_pdf(text="Quyet dinh 23: ho tro 1.000.000 VND"), timestamp=False)
    sig = only_signature(verify(verifier, genuine))
    assert sig["checks"]["integrity"]["code"] == "INTACT", sig["checks"]["integrity"]


class _Attributes:
    """A signer's signed attributes as another tool writes them (pyHanko's provider spec)."""

    def __init__(self, cert: Any, *, ess: bool, signing_time: bool) -> None:
        self.cert, self.ess, self.signing_time = cert, ess, signing_time

    def signed_attr_providers(self, data_digest: bytes, digest_algorithm: str) -> Any:
        import datetime as dt

        from pyhanko.sign import attributes

        if self.ess:
            yield attributes.SigningCertificateV2Provider(signing_cert=self.cert)
        if self.signing_time:
            yield attributes.SigningTimeProvider(timestamp=dt.datetime.now(dt.UTC))


@pytest.mark.parametrize(
    ("ess", "signing_time", "level"),
    [(True, False, "B-T"), (False, False, "E-T"), (True, True, "E-T"), (False, True, "E-T")],
)
def test_an_etsi_signature_without_the_baseline_attributes_is_not_a_baseline_level(
    pki: DevPki, online: Verifier, ess: bool, signing_time: bool, level: str
) -> None:
    """Red team 23a, R23A-2: an ETSI.CAdES.detached signature without the ESS
    signing-certificate-v2 attribute, or with a CMS signing-time (ETSI EN 319 142-1 §6.3 wants
    the first and forbids the second) read "PAdES B-T"; EU DSS: not a baseline signature. The
    verdict is unchanged (the certificate is still selected and checked)."""
    signer = simple_signer(pki)
    signer.signed_attr_prov_spec = _Attributes(
        signer.signing_cert, ess=ess, signing_time=signing_time
    )
    sig = only_signature(verify(online, sign(pki, make_pdf(), signer=signer)))
    assert sig["level"] == level
    assert sig["indication"] == "TOTAL_PASSED", sig["checks"]


class _EssV1:
    """Signed attributes with only the SHA-1 ESS signing-certificate (v1)."""

    def __init__(self, cert: Any) -> None:
        self.cert = cert

    def signed_attr_providers(self, data_digest: bytes, digest_algorithm: str) -> Any:
        from asn1crypto import tsp
        from pyhanko.sign.attributes import CMSAttributeProvider

        cert = self.cert

        class _V1(CMSAttributeProvider):
            attribute_type = "signing_certificate"

            async def build_attr_value(self, dry_run: bool = False) -> Any:
                return tsp.SigningCertificate(
                    {"certs": [{"cert_hash": hashlib.sha1(cert.dump()).digest()}]}
                )

        yield _V1()


def test_a_sha1_only_link_to_the_signer_certificate_is_a_warning(
    pki: DevPki, online: Verifier
) -> None:
    """Red team 23a, R23A-5: the only link to the signer's certificate a SHA-1 hash (ESS v1):
    "algorithms PASSED" and no word, where EU DSS warns."""
    signer = simple_signer(pki)
    signer.signed_attr_prov_spec = _EssV1(signer.signing_cert)
    report = verify(online, sign(pki, make_pdf(), signer=signer))
    assert "SIGNING_CERTIFICATE_SHA1" in {w["code"] for w in report["warnings"]}, report["warnings"]
    plain = verify(online, sign(pki, make_pdf()))
    assert "SIGNING_CERTIFICATE_SHA1" not in {w["code"] for w in plain["warnings"]}
