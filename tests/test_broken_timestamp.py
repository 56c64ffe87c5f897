"""A signature timestamp swapped for another signature's (red team 21c, R21C-2).

The token sits in an unsigned attribute of the CMS: anyone can replace it without touching what
is signed. A genuine token of the same TSA over another signature's value read TOTAL_FAILED /
HASH_FAILURE, "tài liệu đã bị sửa đổi sau khi ký", on an intact document. ETSI EN 319 102-1
§5.5.4 sets a time-stamp that failed validation aside: the signature is judged as if it had none
(as when the token is removed), and a warning names the broken token.
"""

from __future__ import annotations

import io

import pytest
from asn1crypto import cms
from pyhanko.pdf_utils.reader import PdfFileReader

from signing_service.pki.dev import DevPki
from signing_service.services.conclusion import document_status
from signing_service.verification.validate import Verifier
from tests.support.pdfs import make_pdf
from tests.support.verifiers import dev_verifier
from tests.test_other_tools import only_signature, sign, verify


@pytest.fixture(scope="module")
def pki(dev_pki: tuple[DevPki, int]) -> DevPki:
    return dev_pki[0]


@pytest.fixture(scope="module")
def verifier(pki: DevPki) -> Verifier:
    return dev_verifier(pki, fetching=True)


def _cms_and_range(pdf: bytes) -> tuple[cms.ContentInfo, int, int]:
    emb = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0]
    _, start, end, _ = (int(v) for v in emb.sig_object["/ByteRange"])
    return cms.ContentInfo.load(emb.pkcs7_content), start, end


def with_unsigned_attrs_of(target: bytes, donor: bytes) -> bytes:
    """``target`` with its CMS's unsigned attributes (the signature timestamp) replaced in
    place by ``donor``'s: nothing the signature covers changes."""
    content, start, end = _cms_and_range(target)
    donor_content, _, _ = _cms_and_range(donor)
    signer_info = content["content"]["signer_infos"][0]
    signer_info["unsigned_attrs"] = donor_content["content"]["signer_infos"][0]["unsigned_attrs"]
    der = content.dump()
    hexed = der.hex().encode()
    room = end - start - 2  # between '<' and '>'
    assert len(hexed) <= room
    return target[: start + 1] + hexed + b"0" * (room - len(hexed)) + target[end - 1 :]


def test_a_swapped_signature_timestamp_is_set_aside_not_called_tampering(
    pki: DevPki, verifier: Verifier
) -> None:
    genuine = sign(pki, make_pdf("Quyet dinh so 12/QD"))
    other = sign(pki, make_pdf("Quyet dinh so 13/QD"))
    swapped = with_unsigned_attrs_of(genuine, other)
    assert swapped != genuine and len(swapped) == len(genuine)
    report = verify(verifier, swapped)
    sig = only_signature(report)
    assert sig["checks"]["integrity"]["code"] == "INTACT"
    assert sig["sub_indication"] != "HASH_FAILURE", sig
    assert report["verdict"] == "TOTAL_PASSED", sig  # judged as if it had no timestamp
    assert sig["level"] == "B-B"
    assert sig["checks"]["timestamp"]["code"] == "SIGNATURE_TIMESTAMP_BROKEN"
    assert "SIGNATURE_TIMESTAMP_BROKEN" in [w["code"] for w in report["warnings"]]
    # The one sentence a portal shows says the time is only claimed (new user 22 #5).
    status = document_status(report)
    assert status.state == "valid"
    assert "tự khai" in status.message, status.message
    # The same token kept: B-T, no warning (the control).
    control = verify(verifier, genuine)
    assert only_signature(control)["level"] == "B-T"
    assert "SIGNATURE_TIMESTAMP_BROKEN" not in [w["code"] for w in control["warnings"]]
