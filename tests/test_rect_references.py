"""A widget or comment added after signing whose ``/Rect`` holds references (red team 21).

``/Rect [70 692 14 0 R 722]``: viewers resolve the reference (a number is used, anything else
reads as 0) and draw the appearance there. The verifier called such a widget invisible (pyHanko
subtracted the raw references, failed, area 0): a new signature field drawing a prepared
"9.000.000 VND" over the signed amount was approved as validation data only, reported "nội dung
không đổi", and the warnings that read the same rectangle were dropped. Each kind is built here
from the dev PKI: the signed document, then one incremental update as anyone could append it.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import timestamps
from pyhanko.sign.fields import SigFieldSpec, append_signature_field
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper

from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.appearance import KindAppearance
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.verification.rects import annotation_visible, read_rect
from signing_service.verification.validate import Verifier
from tests.support.images import blue_scribble
from tests.support.verifiers import dev_verifier

REPO = Path(__file__).resolve().parent.parent
FAKE = b"1 1 1 rg 0 0 400 30 re f 0 g BT /F1 14 Tf 2 9 Td (So tien ho tro: 9.000.000 VND) Tj ET"


@pytest.fixture(scope="module")
def pki(dev_pki: tuple[DevPki, int]) -> DevPki:
    return dev_pki[0]


@pytest.fixture(scope="module")
def verifier(pki: DevPki) -> Verifier:
    return dev_verifier(pki, fetching=False)


def prepared() -> tuple[bytes, int, int]:
    """A one-page decision showing "1.000.000 VND", plus what a shadow attack's preparer
    leaves in it: an unused Form XObject drawing "9.000.000 VND" and an indirect number (400).
    Returns (PDF, the XObject's object number, the number's object number)."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont="/Helvetica"
        )
    )
    page = pdf.add_blank_page(page_size=(595, 842))
    page.obj.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
    page.obj.Contents = pdf.make_stream(
        b"BT /F1 14 Tf 72 700 Td (So tien ho tro: 1.000.000 VND) Tj ET"
    )
    out = io.BytesIO()
    pdf.save(out)
    # The hidden drawing and the indirect number, in an update before signing (pikepdf keeps
    # no indirect number).
    w = IncrementalPdfFileWriter(io.BytesIO(out.getvalue()))
    font_ref = w.root["/Pages"]["/Kids"][0].get_object()["/Resources"]["/Font"].raw_get("/F1")
    hidden = w.add_object(
        generic.StreamObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/XObject"),
                generic.NameObject("/Subtype"): generic.NameObject("/Form"),
                generic.NameObject("/BBox"): generic.ArrayObject(
                    generic.NumberObject(v) for v in (0, 0, 400, 30)
                ),
                generic.NameObject("/Resources"): generic.DictionaryObject(
                    {
                        generic.NameObject("/Font"): generic.DictionaryObject(
                            {generic.NameObject("/F1"): font_ref}
                        )
                    }
                ),
            },
            stream_data=FAKE,
        )
    )
    number = w.add_object(generic.NumberObject(400))
    w.root[generic.NameObject("/Unused")] = generic.ArrayObject([hidden, number])
    w.update_root()
    out = io.BytesIO()
    w.write(out)
    return out.getvalue(), hidden.idnum, number.idnum


def signed(pki: DevPki, data: bytes, visible: bool = False) -> bytes:
    key = load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())
    from signing_service.signing.stamp_images import stamp_image

    appearance = (
        KindAppearance(
            kind="person",
            title="GIÁM ĐỐC",
            signature=stamp_image(blue_scribble(), width_mm=45.0, height_mm=18.0),
        )
        if visible
        else None
    )
    options = SignOptions(level=SignatureLevel.B_B, appearance=appearance)
    return asyncio.run(async_sign_pdf(data, key, options))


def with_field(
    data: bytes,
    rect: tuple[float, float, float, float],
    reference: int,
    index: int,
    shows: int,
    timestamp_url: str | None = None,
) -> bytes:
    """``data`` plus one update: a new signature field whose /Rect's element ``index`` is a
    reference to object ``reference`` and whose appearance is the existing object ``shows``;
    with ``timestamp_url``, filled by a document timestamp from that TSA."""
    w = IncrementalPdfFileWriter(io.BytesIO(data))
    append_signature_field(w, SigFieldSpec("ChuKy2", box=rect, on_page=0))
    for field_ref in w.root["/AcroForm"]["/Fields"]:
        field = field_ref.get_object()
        if field.get("/T") == "ChuKy2":
            coords: list[generic.PdfObject] = [generic.FloatObject(v) for v in rect]
            coords[index] = generic.IndirectObject(reference, 0, w)
            field["/Rect"] = generic.ArrayObject(coords)
            field["/AP"] = generic.DictionaryObject(
                {generic.NameObject("/N"): generic.IndirectObject(shows, 0, w)}
            )
            w.update_container(field)
    out = io.BytesIO()
    if timestamp_url is None:
        w.write(out)
    else:
        stamper = PdfTimeStamper(timestamps.HTTPTimeStamper(timestamp_url), field_name="ChuKy2")
        asyncio.run(stamper.async_timestamp_pdf(w, "sha256", output=out))
    return out.getvalue()


def verify(verifier: Verifier, data: bytes) -> dict[str, Any]:
    return json.loads(json.dumps(asyncio.run(verifier.async_verify(data)).to_dict()))


def first_modifications(report: dict[str, Any]) -> str:
    return str(report["signatures"][0]["checks"]["modifications"]["code"])


def codes(report: dict[str, Any]) -> list[str]:
    return [w["code"] for w in report.get("warnings", [])]


def test_a_prepared_overlay_switched_on_by_an_empty_field_is_content_added(
    pki: DevPki, verifier: Verifier
) -> None:
    """R21-1 (no key, no TSA needed): the preparer's "9.000.000" drawn over the signed
    amount by a new empty signature field whose /Rect's x2 is the indirect number 400."""
    data, hidden, number = prepared()
    original = signed(pki, data)
    assert first_modifications(verify(verifier, original)) == "NO_CHANGES"
    attacked = with_field(original, (70, 692, 470, 722), number, 2, hidden)
    report = verify(verifier, attacked)
    assert first_modifications(report) == "ALLOWED_FORM_FILLING", report["signatures"][0]
    assert "UNSIGNED_FIELD_ADDED_AFTER_SIGNING" in codes(report)


def test_a_prepared_overlay_in_a_visible_document_timestamp_is_named(
    pki: DevPki, verifier: Verifier
) -> None:
    """R21-1 with a document timestamp doing the switching: the signature's update is form
    filling (not validation data only), and the timestamp's picture is named as such."""
    data, hidden, number = prepared()
    attacked = with_field(
        signed(pki, data), (70, 692, 470, 722), number, 2, hidden, timestamp_url=pki.tsa_url
    )
    report = verify(verifier, attacked)
    assert first_modifications(report) == "ALLOWED_FORM_FILLING", report["signatures"][0]
    assert "TIMESTAMP_APPEARANCE_ADDED" in codes(report)


def test_the_own_stamp_copied_through_a_reference_to_a_non_number(
    pki: DevPki, verifier: Verifier
) -> None:
    """R21-2 (no preparation): the agency's own stamp shown again elsewhere by a new field
    whose /Rect's x1 is a reference to the catalog (viewers read 0)."""
    data, _, _ = prepared()
    original = signed(pki, data, visible=True)
    with pikepdf.open(io.BytesIO(original)) as pdf:
        stamp = next(
            obj.objgen[0]
            for obj in pdf.objects
            if isinstance(obj, pikepdf.Stream)
            and obj.get("/Subtype") == "/Form"
            and b"Tj" in obj.read_bytes()
        )
        catalog = pdf.Root.objgen[0]
    attacked = with_field(original, (0, 500, 220, 552), catalog, 0, stamp)
    report = verify(verifier, attacked)
    assert first_modifications(report) == "ALLOWED_FORM_FILLING", report["signatures"][0]
    assert "UNSIGNED_FIELD_ADDED_AFTER_SIGNING" in codes(report)


def test_a_comment_over_the_stamp_with_a_referenced_corner(pki: DevPki, verifier: Verifier) -> None:
    """R21-3: a white Square comment over the signature's stamp, /Rect [1 0 R y1 x2 y2]: named
    ANNOTATION_OVER_SIGNATURE, as with plain numbers."""
    data, _, _ = prepared()
    original = signed(pki, data, visible=True)
    with pikepdf.open(io.BytesIO(original)) as pdf:
        widget = next(a for a in pdf.pages[0].obj.Annots if a.get("/Subtype") == "/Widget")
        x1, y1, x2, y2 = (float(v) for v in widget.Rect)
        catalog = pdf.Root.objgen[0]
    w = IncrementalPdfFileWriter(io.BytesIO(original))
    page_ref = w.root["/Pages"]["/Kids"][0]
    page = page_ref.get_object()
    comment = w.add_object(
        generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/Annot"),
                generic.NameObject("/Subtype"): generic.NameObject("/Square"),
                generic.NameObject("/Rect"): generic.ArrayObject(
                    [
                        generic.IndirectObject(catalog, 0, w),
                        generic.FloatObject(y1),
                        generic.FloatObject(x2),
                        generic.FloatObject(y2),
                    ]
                ),
                generic.NameObject("/IC"): generic.ArrayObject([generic.FloatObject(1)] * 3),
            }
        )
    )
    page["/Annots"].append(comment)
    w.update_container(page)
    out = io.BytesIO()
    w.write(out)
    report = verify(verifier, out.getvalue())
    assert "ANNOTATION_OVER_SIGNATURE" in codes(report), codes(report)
    assert x1 > 0  # the comment's left edge (0) lies left of the stamp: it covers it


@pytest.mark.parametrize(
    ("rect", "box", "plain", "visible"),
    [
        ([1, 2, 3, 4], (1, 2, 3, 4), True, True),
        ([0, 0, 0, 0], (0, 0, 0, 0), True, False),
        ([3, 4, 1, 2], (1, 2, 3, 4), True, True),
        ([1, 2, "x", 4], (0, 2, 1, 4), False, True),
        ([0, 0, 0], None, False, True),
        ([0, 0, 0, 10**400], (0, 0, 0, 0), False, True),
        (None, None, True, False),
    ],
)
def test_read_rect(rect: Any, box: Any, plain: bool, visible: bool) -> None:
    """Viewers' reading: a non-number is 0; anything but four plain numbers is visible."""
    value = (
        None
        if rect is None
        else generic.ArrayObject(
            generic.TextStringObject(v) if isinstance(v, str) else generic.NumberObject(v)
            for v in rect
        )
    )
    read = read_rect(value)
    assert read.box == (None if box is None else tuple(float(v) for v in box))
    assert read.plain is plain
    annot = generic.DictionaryObject()
    if value is not None:
        annot[generic.NameObject("/Rect")] = value
    assert annotation_visible(annot) is visible
