"""A signed input is never repaired, whatever its spelling (red team 17b, R17B-3).

The repair step (signing/repair.py) rewrites a damaged PDF with qpdf before signing it; a
rewrite breaks every earlier signature, so a file that carries one is refused
``SIGNED_PDF_DAMAGED``. The red team hid a valid signature from both of its detectors: the
raw pre-check missed ``/ByteRange<NUL>[`` (NUL is PDF white space), and the check after
qpdf's reconstruction missed a signature field whose ``/FT /Sig`` sits on its parent
(``/FT`` is inheritable). Every input is built here.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from typing import Any

import pikepdf
import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument

from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing import repair
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from tests.support.damaged import DAMAGES
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot


def auth(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}


def verify(api: Any, data: bytes) -> dict[str, Any]:
    response = api.post("/v1/verifications", files={"file": ("x.pdf", data, "application/pdf")})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def with_inherited_sig_field(data: bytes) -> bytes:
    """``data`` with an empty signature field ``Ky.A``: the widget kid ``A`` has no ``/FT``
    of its own, its parent ``Ky`` has ``/FT /Sig`` (ISO 32000-1 §12.7.3.1)."""
    writer = IncrementalPdfFileWriter(io.BytesIO(data))
    page_ref = writer.root["/Pages"]["/Kids"][0]
    page = page_ref.get_object()
    parent = generic.DictionaryObject(
        {pdf_name("/T"): generic.TextStringObject("Ky"), pdf_name("/FT"): pdf_name("/Sig")}
    )
    parent_ref = writer.add_object(parent)
    kid_ref = writer.add_object(
        generic.DictionaryObject(
            {
                pdf_name("/T"): generic.TextStringObject("A"),
                pdf_name("/Parent"): parent_ref,
                pdf_name("/Type"): pdf_name("/Annot"),
                pdf_name("/Subtype"): pdf_name("/Widget"),
                pdf_name("/Rect"): generic.ArrayObject([generic.NumberObject(0)] * 4),
                pdf_name("/F"): generic.NumberObject(132),
                pdf_name("/P"): page_ref,
            }
        )
    )
    parent[pdf_name("/Kids")] = generic.ArrayObject([kid_ref])
    page[pdf_name("/Annots")] = generic.ArrayObject([kid_ref])
    writer.update_container(page)
    writer.root[pdf_name("/AcroForm")] = generic.DictionaryObject(
        {
            pdf_name("/Fields"): generic.ArrayObject([parent_ref]),
            pdf_name("/SigFlags"): generic.NumberObject(3),
        }
    )
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def signed_with_hidden_byterange(pki: DevPki) -> bytes:
    """A valid signature in the inherited field ``Ky.A`` whose signature dictionary spells
    ``/ByteRange<NUL>[``: the bytes are changed before they are digested, so the signature
    covers them and verifies."""
    key = load_pkcs12_file(pki.p12_path("agency-b-seal"), DEV_KEY_PASSPHRASE.encode())
    data = with_inherited_sig_field(make_pdf(text="Quyet dinh da ky"))
    meta = signers.PdfSignatureMetadata(field_name="Ky.A", subfilter=fields.SigSeedSubFilter.PADES)
    pdf_signer = signers.PdfSigner(meta, signer=key.signer)
    writer = IncrementalPdfFileWriter(io.BytesIO(data))
    prepared, _, out = asyncio.run(
        pdf_signer.async_digest_doc_for_signing(writer, existing_fields_only=True)
    )
    tbs = bytearray(out.getvalue())
    at = tbs.find(b"/ByteRange [")
    assert at > 0
    tbs[at : at + 12] = b"/ByteRange\x00["
    start, end = prepared.reserved_region_start, prepared.reserved_region_end
    digest = hashlib.sha256(bytes(tbs[:start]) + bytes(tbs[end:])).digest()
    cms = asyncio.run(key.signer.async_sign(digest, "sha256", use_pades=True))
    result = io.BytesIO(bytes(tbs))
    PdfTBSDocument.resume_signing(result, PreparedByteRangeDigest(digest, start, end), cms)
    signed = result.getvalue()
    assert b"/ByteRange [" not in signed and b"/ByteRange\x00[" in signed
    return signed


def test_signature_hidden_by_nul_and_inherited_type_is_refused_not_repaired(
    api: Any, services: Services, credentials: dict[str, Any], dev_pki: tuple[DevPki, int]
) -> None:
    signed = signed_with_hidden_byterange(dev_pki[0])
    report = verify(api, signed)
    assert report["verdict"] == "TOTAL_PASSED", report
    # An unsigned update whose startxref points nowhere: damage the service would repair.
    damaged = signed + b"\n9999 0 obj\n(x)\nendobj\nstartxref\n123456789\n%%EOF\n"
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers=auth(credentials),
        data={"profile": "agency-a-seal", "level": "B-B"},
        files={"file": ("da-ky.pdf", damaged, "application/pdf")},
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "SIGNED_PDF_DAMAGED"
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    "mark",
    [
        b"/ByteRange [0 10 20 30]",
        b"/ByteRange\x00[0 10 20 30]",
        b"/ByteRange%comment\r\n[0 10 20 30]",
        b"/ByteRange\x0c\x00 [0 10 20 30]",
        b"/Byte#52ange [0 10 20 30]",
        b"/#42#79#74#65#52#61#6e#67#65 [0 10 20 30]",
        b"/#42#79#74#65#52#61#6E#67#65 [0 10 20 30]",
        b"/ByteRange 5 0 R",
        b"/Type /Sig /Filter /Adobe.PPKLite",
        b"/Type/Sig>>",
        b"/Type\x00%c\n/Si#67/Filter",
        b"/#54ype /DocTimeStamp",
    ],
)
def test_raw_marks_of_a_signature_in_any_spelling(mark: bytes) -> None:
    data = make_pdf() + b"\n99 0 obj\n<<" + mark + b">>\nendobj\n"
    assert repair.carries_signatures(data)
    with pytest.raises(repair.SignedDocumentDamaged):
        repair.repair(DAMAGES["prefix-before-header"](data))


@pytest.mark.parametrize(
    "text",
    [
        b"/Type /SigFieldLock /Action /All",  # a prepared field's lock, not a signature
        b"/Type /Signature",
        b"/Type %x /Sig",  # "/Sig" inside the comment
        b"/Byte#72ange",  # "r", another name
        b"/SV << /SubFilter [/adbe.pkcs7.detached /ETSI.CAdES.detached] >>",  # seed values
    ],
)
def test_unsigned_marks_are_not_signatures(text: bytes) -> None:
    data = make_pdf() + b"\n99 0 obj\n<<" + text + b">>\nendobj\n"
    assert not repair.carries_signatures(data)


def test_raw_search_is_linear_on_hostile_bytes() -> None:
    """A run of "%" or "/" cannot make the pattern backtrack (it is possessive)."""
    for data in (b"/Type" + b"%" * 2_000_000 + b"X", b"/Type%" + b"%a" * 500_000, b"/#" * 10**6):
        assert not repair.carries_signatures(data)


def compressed(build: Any) -> bytes:
    """A pikepdf document built by ``build(pdf)``, saved with object streams (every
    dictionary compressed: the raw bytes show no mark), then damaged (startxref off)."""
    pdf = pikepdf.open(io.BytesIO(make_pdf()))
    build(pdf)
    out = io.BytesIO()
    pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    data = out.getvalue()
    assert not repair.carries_signatures(data)
    return DAMAGES["startxref-off-by-7"](data)


def sig_dictionary(pdf: pikepdf.Pdf, **extra: Any) -> pikepdf.Object:
    return pdf.make_indirect(
        pikepdf.Dictionary(
            ByteRange=[0, 10, 20, 30],
            Contents=pikepdf.String(b"\x30\x03\x02\x01\x00"),
            Filter=pikepdf.Name("/Adobe.PPKLite"),
            **extra,
        )
    )


def field_tree(pdf: pikepdf.Pdf, parent: pikepdf.Dictionary, kid: pikepdf.Dictionary) -> None:
    parent_ref = pdf.make_indirect(parent)
    kid.Parent = parent_ref
    kid_ref = pdf.make_indirect(kid)
    parent_ref.Kids = pikepdf.Array([kid_ref])
    pdf.Root.AcroForm = pikepdf.Dictionary(Fields=pikepdf.Array([parent_ref]), SigFlags=3)


def inherited_type(pdf: pikepdf.Pdf) -> None:
    field_tree(
        pdf,
        pikepdf.Dictionary(T=pikepdf.String("Ky"), FT=pikepdf.Name.Sig),
        pikepdf.Dictionary(T=pikepdf.String("A"), V=sig_dictionary(pdf)),
    )


def value_is_a_signature(pdf: pikepdf.Pdf) -> None:
    # No /FT anywhere: the value is a signature dictionary all the same.
    field_tree(
        pdf,
        pikepdf.Dictionary(T=pikepdf.String("Ky")),
        pikepdf.Dictionary(T=pikepdf.String("A"), V=sig_dictionary(pdf)),
    )


def stray_signature_dictionary(pdf: pikepdf.Pdf) -> None:
    # A signature dictionary no field names (only /Type /Sig, no /ByteRange).
    pdf.Root.Extra = pdf.make_indirect(
        pikepdf.Dictionary(Type=pikepdf.Name.Sig, Contents=pikepdf.String(b"\x30\x00"))
    )


@pytest.mark.parametrize(
    "build", [inherited_type, value_is_a_signature, stray_signature_dictionary]
)
def test_signature_found_after_reconstruction_is_refused(build: Any) -> None:
    with pytest.raises(repair.SignedDocumentDamaged):
        repair.repair(compressed(build))


def test_empty_inherited_signature_field_is_repaired() -> None:
    """The control: an empty prepared field (inherited /FT, no /V) is no signature."""

    def empty_field(pdf: pikepdf.Pdf) -> None:
        field_tree(
            pdf,
            pikepdf.Dictionary(T=pikepdf.String("Ky"), FT=pikepdf.Name.Sig),
            pikepdf.Dictionary(T=pikepdf.String("A"), Rect=[0, 0, 0, 0]),
        )

    assert repair.repair(compressed(empty_field)).startswith(b"%PDF-")
