"""Prepared signature fields a visible stamp would not be seen in (red team issue 10, F5):
off the page, Hidden or NoView, zero-sized, tiny, or absurdly large. Named: 422
``SIGNATURE_FIELD_NOT_VISIBLE`` before anything is signed; unnamed: not chosen (the stamp goes
where the placement rules put it)."""

from __future__ import annotations

import asyncio
import io

import pikepdf
import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from signing_service import errors
from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.appearance import AppearanceSpec
from signing_service.signing.engine import SignOptions, async_sign_pdf, prepared_field
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.signing.placement import PlacementError, place
from tests.support.pdfs import make_pdf

NORMAL = (330.0, 80.0, 550.0, 160.0)


def with_field(
    rect: tuple[float, ...], flags: int = 4, *, crop: list[float] | None = None
) -> bytes:
    """A one-page A4 PDF with an empty signature field ``ChuKy`` (widget /Rect ``rect``,
    annotation flags ``flags``: 4 is Print)."""
    pdf = pikepdf.open(io.BytesIO(make_pdf()))
    page = pdf.pages[0]
    if crop is not None:
        page.obj.CropBox = pikepdf.Array(crop)
    field = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Annot,
            Subtype=pikepdf.Name.Widget,
            FT=pikepdf.Name.Sig,
            T=pikepdf.String("ChuKy"),
            Rect=pikepdf.Array(list(rect)),
            F=flags,
            P=page.obj,
        )
    )
    page.obj.Annots = pdf.make_indirect(pikepdf.Array([field]))
    pdf.Root.AcroForm = pdf.make_indirect(
        pikepdf.Dictionary(Fields=pikepdf.Array([field]), SigFlags=3)
    )
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


UNSEEN = {
    "off-page": with_field((5000, 5000, 5200, 5100)),
    "partly-off-page": with_field((500, 80, 720, 160)),
    "hidden": with_field(NORMAL, flags=2 | 4),
    "noview": with_field(NORMAL, flags=32 | 4),
    "zero": with_field((330, 80, 330, 80)),
    "tiny": with_field((330, 80, 340, 84)),
    "huge": with_field((-1e6, -1e6, 1e6, 1e6)),
    "outside-cropbox": with_field(NORMAL, crop=[0, 300, 595, 842]),
}


def reader(data: bytes) -> PdfFileReader:
    return PdfFileReader(io.BytesIO(data))


@pytest.mark.parametrize("case", sorted(UNSEEN))
def test_named_field_not_seen_is_refused(case: str) -> None:
    with pytest.raises(PlacementError) as refused:
        place(reader(UNSEEN[case]), width=220, height=52, region="top-right", field_name="ChuKy")
    assert refused.value.code == "SIGNATURE_FIELD_NOT_VISIBLE"
    assert refused.value.code in errors.PLACEMENT_ERRORS


@pytest.mark.parametrize("case", sorted(UNSEEN))
def test_unnamed_field_not_seen_is_not_chosen(case: str) -> None:
    if case == "huge":
        # Its widget covers the whole page: an obstacle, so no free place either.
        with pytest.raises(PlacementError) as full:
            place(reader(UNSEEN[case]), width=220, height=52, region="top-right")
        assert full.value.code == "NO_SPACE_FOR_SIGNATURE"
        return
    chosen = place(reader(UNSEEN[case]), width=220, height=52, region="top-right")
    assert chosen.existing_field is None
    x1, y1, x2, y2 = chosen.box
    assert 0 <= x1 < x2 <= 595 and 0 <= y1 < y2 <= 842


def test_field_on_the_page_is_filled() -> None:
    data = with_field(NORMAL)
    chosen = place(reader(data), width=220, height=52, region="top-right", field_name="ChuKy")
    assert chosen.existing_field == "ChuKy" and chosen.box == NORMAL
    assert place(reader(data), width=220, height=52, region="top-right").existing_field == "ChuKy"


def test_invisible_signature_may_still_fill_a_hidden_field() -> None:
    """Only a *visible* stamp needs to be seen: an invisible profile naming the field fills
    it as before."""
    assert prepared_field(reader(UNSEEN["hidden"]), "ChuKy").existing_field == "ChuKy"


def test_engine_refuses_before_signing(dev_pki: tuple[DevPki, int]) -> None:
    key = load_pkcs12_file(dev_pki[0].p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())
    options = SignOptions(level=SignatureLevel.B_B, appearance=AppearanceSpec(), field_name="ChuKy")
    with pytest.raises(PlacementError) as refused:
        asyncio.run(async_sign_pdf(UNSEEN["off-page"], key, options))
    assert refused.value.code == "SIGNATURE_FIELD_NOT_VISIBLE"
    signed = asyncio.run(async_sign_pdf(with_field(NORMAL), key, options))
    assert [s.field_name for s in reader(signed).embedded_signatures] == ["ChuKy"]
