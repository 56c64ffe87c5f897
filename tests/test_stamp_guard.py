"""Red team 10, findings 1, 4, 6, 9, 10: what a stamp image may be and where a seal may go.

- A seal goes over an earlier signature only when that signature is intact and its signer
  certificate names the seal's organisation; another agency's signature, or a field whose /V
  is not a real signature (a forged one, another document's CMS), is left alone (F1).
- Screening: a mostly opaque image (94.5 % opaque white) and an image with no ink (fully
  transparent) are refused (F1, F10).
- Size: an image that is small as a PNG but large in pixels is downscaled to what the stamp
  shows, so the signed document stays small, and the image cache is bounded by bytes (F4).
- PDF/A-1: the image kinds need a soft mask, which PDF/A-1 forbids: refused with its own
  code; text kinds still allowed (F6).
- Image names matched whole; stored images re-encoded, the upload's other content dropped (F9,
  F10).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import struct
import zlib
from datetime import UTC, datetime
from typing import Any

import pikepdf
import pytest
from PIL import Image
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import select

from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from signing_service.signing import stamp_images
from signing_service.signing.appearance import KindAppearance
from signing_service.signing.engine import PdfInputError, SignOptions, async_sign_pdf
from signing_service.signing.levels import SignatureLevel
from signing_service.signing.stamp_images import (
    CACHE_BYTES,
    MAX_STAMP_SIDE,
    ImageRejected,
    cache_bytes,
    screen_png,
    stamp_image,
)
from signing_service.store.models import AppearanceImage
from tests.support.images import blue_scribble, png_bytes, png_chunk, red_seal
from tests.support.keys import loaded_dev_keys
from tests.support.pdfa import pdfa_pdf
from tests.support.pdfs import make_pdf

MOMENT = datetime(2026, 11, 27, 7, 5, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def keys(dev_pki: tuple[DevPki, int]) -> dict[str, Any]:
    return loaded_dev_keys(dev_pki[0])


def sign(pdf: bytes, key: Any, appearance: KindAppearance) -> bytes:
    options = SignOptions(level=SignatureLevel.B_B, appearance=appearance)
    return asyncio.run(async_sign_pdf(pdf, key, options, now=MOMENT))


def person() -> KindAppearance:
    signature = stamp_image(blue_scribble(), width_mm=45.0, height_mm=18.0)
    return KindAppearance(kind="person", title="GIÁM ĐỐC", signature=signature)


def seal() -> KindAppearance:
    return KindAppearance(kind="seal", seal=stamp_image(red_seal(), width_mm=34.0, height_mm=34.0))


def widget_rects(pdf: bytes) -> list[tuple[float, float, float, float]]:
    """Each signature field's widget /Rect, in field order."""
    reader = PdfFileReader(io.BytesIO(pdf))
    rects = []
    for field in reader.root["/AcroForm"]["/Fields"]:
        field = field.get_object()
        if field.get("/FT") == "/Sig":
            x1, y1, x2, y2 = (float(v) for v in field["/Rect"])
            rects.append((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)))
    return rects


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# --- F1: where a seal goes ------------------------------------------------------------------


def test_seal_goes_over_the_same_agency_signature(keys: dict[str, Any]) -> None:
    """The officer (O = Sở Tư pháp tỉnh Demo A) signs, then agency A's seal: over it."""
    signed = sign(make_pdf(), keys["officer"], person())
    sealed = sign(signed, keys["agency-a-seal"], seal())
    person_rect, seal_rect = widget_rects(sealed)
    assert overlap(person_rect, seal_rect)


def test_seal_does_not_go_over_another_agency_signature(keys: dict[str, Any]) -> None:
    """Agency B's person signature, then agency A's seal: placed by the normal rule, clear of
    B's signature (it went over it, and a white 'seal' blanked it out)."""
    signed = sign(make_pdf(), keys["agency-b-seal"], person())
    sealed = sign(signed, keys["agency-a-seal"], seal())
    person_rect, seal_rect = widget_rects(sealed)
    assert not overlap(person_rect, seal_rect), (person_rect, seal_rect)
    # The same document sealed by agency B itself: over its own signature.
    own = sign(signed, keys["agency-b-seal"], seal())
    person_rect, seal_rect = widget_rects(own)
    assert overlap(person_rect, seal_rect)


def _fake_signed_field(contents: bytes) -> bytes:
    """A page with a body line and a signature field over it whose /V is not a signature made
    over this document: ``contents`` as its /Contents, a /ByteRange of nothing in particular."""
    pdf = pikepdf.open(io.BytesIO(make_pdf()))
    page = pdf.pages[0]
    value = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Sig,
            Filter=pikepdf.Name("/Adobe.PPKLite"),
            SubFilter=pikepdf.Name("/ETSI.CAdES.detached"),
            ByteRange=pikepdf.Array([0, 10, 20, 10]),
            Contents=pikepdf.String(contents),
        )
    )
    field = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Annot,
            Subtype=pikepdf.Name.Widget,
            FT=pikepdf.Name.Sig,
            T=pikepdf.String("Fake"),
            Rect=pikepdf.Array([60, 600, 400, 760]),
            F=4,
            P=page.obj,
            V=value,
        )
    )
    page.obj["/Annots"] = pdf.make_indirect(pikepdf.Array([field]))
    pdf.Root["/AcroForm"] = pikepdf.Dictionary(Fields=pikepdf.Array([field]), SigFlags=3)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def _cms_of(pdf: bytes) -> bytes:
    reader = PdfFileReader(io.BytesIO(pdf))
    return reader.embedded_signatures[0].pkcs7_content


@pytest.mark.parametrize("source", ["garbage", "copied-cms"])
def test_seal_does_not_go_over_a_field_that_is_not_a_signature(
    keys: dict[str, Any], source: str
) -> None:
    """A submitter's field with a made-up /V (or agency A's real CMS copied from another
    document: right organisation, but not a signature over this document) does not choose
    where agency A's seal lands."""
    if source == "garbage":
        contents = b"\x00" * 64
    else:
        contents = _cms_of(sign(make_pdf(), keys["officer"], person()))
    sealed = sign(_fake_signed_field(contents), keys["agency-a-seal"], seal())
    reader = PdfFileReader(io.BytesIO(sealed))
    fields = [f.get_object() for f in reader.root["/AcroForm"]["/Fields"]]
    fake = next(f for f in fields if f["/T"] == "Fake")
    ours = next(f for f in fields if f["/T"] != "Fake")
    rect = lambda f: tuple(float(v) for v in f["/Rect"])  # noqa: E731
    assert not overlap(rect(fake), rect(ours)), (rect(fake), rect(ours))


# --- F1, F10: screening ---------------------------------------------------------------------


def _white_with_band() -> bytes:
    """The red team's 'seal': opaque white with an 11-px transparent band (5.5 % transparent)."""
    image = Image.new("RGBA", (200, 200), (255, 255, 255, 255))
    image.paste((0, 0, 0, 0), (0, 0, 200, 11))
    return png_bytes(image)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_white_with_band(), "no_transparency"),
        (png_bytes(Image.new("RGBA", (16, 16), (255, 0, 0, 0))), "empty"),
        (png_bytes(Image.new("RGBA", (200, 200), (255, 0, 0, 20))), "empty"),
    ],
    ids=["white-94-percent-opaque", "fully-transparent", "faint"],
)
def test_screening_refuses_opaque_and_empty_images(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as refused:
        screen_png(data)
    assert refused.value.reason == reason


def test_screening_accepts_the_seal_and_signature_images() -> None:
    screen_png(red_seal())
    screen_png(blue_scribble())


# --- F4: image size -------------------------------------------------------------------------


def fat_png(seed: bytes | None = None) -> bytes:
    """2048² px in ~20 kB (red team F4): a random first row, every later row the previous one
    plus 1 in R, G, B (PNG Up filter: a constant row, which zlib compresses to nothing), alpha
    constant per column (half the columns transparent, half opaque: screening passes). Decoded
    rows do not repeat within zlib's 32 kB window: re-deflating the raw samples made ~17 MB."""
    side = 2048
    first = bytearray(seed or os.urandom(side * 4))
    for x in range(side):
        first[4 * x + 3] = 0 if x % 2 else 255
    up = bytes([1, 1, 1, 0]) * side
    raw = b"\x00" + bytes(first) + (b"\x02" + up) * (side - 1)
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw, 9))
        + png_chunk(b"IEND", b"")
    )


def test_big_but_small_png_keeps_the_signed_document_small(keys: dict[str, Any]) -> None:
    data = fat_png()
    assert len(data) < 100_000
    screen_png(data)  # accepted as an upload
    image = stamp_image(data, width_mm=120.0, height_mm=120.0)
    assert max(image.width_px, image.height_px) <= MAX_STAMP_SIDE
    pdf = make_pdf()
    sealed = sign(pdf, keys["agency-a-seal"], KindAppearance(kind="seal", seal=image))
    assert len(sealed) - len(pdf) < 300_000, len(sealed) - len(pdf)
    # The embedded image decodes (predictors and all) to the downscaled size.
    with pikepdf.open(io.BytesIO(sealed)) as signed:
        images = [
            obj
            for obj in signed.objects
            if isinstance(obj, pikepdf.Stream) and obj.get("/Subtype") == "/Image"
        ]
        rgb = next(i for i in images if "/SMask" in i)
        decoded = pikepdf.PdfImage(rgb).as_pil_image()
        assert decoded.size == (image.width_px, image.height_px)


def test_small_images_are_not_resampled() -> None:
    image = stamp_image(red_seal(), width_mm=34.0, height_mm=34.0)
    assert (image.width_px, image.height_px) == (300, 300)


def test_cache_is_bounded_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries of ~200 kB against a 1 MiB bound (the production bound, 32 MiB, takes ~160 such
    entries to reach): the bytes held stay under it while entries keep coming."""
    monkeypatch.setattr(stamp_images, "CACHE_BYTES", 1024 * 1024)
    data = fat_png()
    for step in range(10):
        width = 60.0 + step
        stamp_image(data, width_mm=width, height_mm=width)
        assert cache_bytes() <= 1024 * 1024
    assert cache_bytes() > 512 * 1024
    assert len(stamp_images._cache) < 10
    monkeypatch.undo()
    # Back under the production bound: the next insertion evicts down to it as well.
    stamp_image(data, width_mm=59.0, height_mm=59.0)
    assert cache_bytes() <= CACHE_BYTES


# --- F6: PDF/A-1 ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["person", "seal"])
def test_pdfa1_refuses_image_kinds(keys: dict[str, Any], kind: str) -> None:
    appearance = person() if kind == "person" else seal()
    with pytest.raises(PdfInputError) as refused:
        sign(pdfa_pdf(1), keys["agency-a-seal"], appearance)
    assert refused.value.reason == "pdfa1_no_transparency"


def test_pdfa1_text_kinds_and_pdfa2_images_still_sign(keys: dict[str, Any]) -> None:
    copy = KindAppearance(kind="copy", copy_kind="SAO Y", unit="Sở Tư pháp tỉnh Demo A")
    for pdf, appearance in ((pdfa_pdf(1), copy), (pdfa_pdf(2), person())):
        signed = sign(pdf, keys["agency-a-seal"], appearance)
        assert len(PdfFileReader(io.BytesIO(signed)).embedded_signatures) == 1


# --- F9, F10 over the API -------------------------------------------------------------------

IMAGES = "/v1/admin/appearance-images"


def _admin(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][0]['admin_api_key']}"}


def test_image_name_with_trailing_newline_is_refused(api: Any, credentials: dict[str, Any]) -> None:
    refused = api.post(
        IMAGES,
        headers=_admin(credentials),
        data={"name": "abcd\n", "role": "seal", "width_mm": "34"},
        files={"file": ("a.png", red_seal(), "image/png")},
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "INVALID_IMAGE"), refused.text


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (_white_with_band(), "IMAGE_NOT_TRANSPARENT"),
        (png_bytes(Image.new("RGBA", (16, 16), (0, 0, 0, 0))), "IMAGE_EMPTY"),
    ],
)
def test_upload_refuses_opaque_and_empty(
    api: Any, credentials: dict[str, Any], data: bytes, code: str
) -> None:
    refused = api.post(
        IMAGES,
        headers=_admin(credentials),
        data={"name": "con-dau", "role": "seal", "width_mm": "34"},
        files={"file": ("a.png", data, "image/png")},
    )
    assert (refused.status_code, refused.json()["code"]) == (422, code), refused.text
    assert refused.json()["message"]


def test_stored_image_is_re_encoded(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """A text chunk with HTML and a PDF after IEND: accepted, but what is stored is the
    pixels re-encoded, without either."""
    seal_png = red_seal()
    iend = seal_png.rindex(b"IEND") - 4
    poly = (
        seal_png[:iend]
        + png_chunk(b"tEXt", b"Comment\x00<script>alert(1)</script>")
        + seal_png[iend:]
        + b"%PDF-1.7\n1 0 obj<<>>endobj\n%%EOF\n"
    )
    stored = api.post(
        IMAGES,
        headers=_admin(credentials),
        data={"name": "con-dau", "role": "seal", "width_mm": "34"},
        files={"file": ("a.png", poly, "image/png")},
    )
    assert stored.status_code == 201, stored.text
    with services.db.transaction() as session:
        key = session.scalars(select(AppearanceImage.storage_key)).one()
    data = services.store.get(key)
    assert b"tEXt" not in data and b"<script>" not in data and b"%PDF" not in data
    assert data.endswith(b"IEND\xaeB`\x82")
    assert stored.json()["sha256"] == hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as reread, Image.open(io.BytesIO(seal_png)) as original:
        assert reread.convert("RGBA").tobytes() == original.convert("RGBA").tobytes()
