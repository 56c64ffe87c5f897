"""Where the visible signature goes (signing/placement.py), checked on rendered pages.

Each test builds its page (pikepdf, Helvetica text), signs it, renders the unsigned and the
signed page with poppler (``pdftoppm -r 50``) and takes the pixels that changed as the stamp's.
Those must lie inside the visible page (the rendered image is the CropBox ∩ MediaBox, turned by
/Rotate), keep off its edges, and fall outside every word box that ``pdftotext -bbox -cropbox``
finds on the unsigned page. The stamp is wider than tall, so a sideways one is caught too.
"""

from __future__ import annotations

import asyncio
import io
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from PIL import Image, ImageChops
from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import enumerate_sig_fields

from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.appearance import AppearanceSpec
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys import LoadedKey
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.signing.placement import PlacementError, place
from tests.support.state import assert_nothing_written, snapshot

pytestmark = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="poppler-utils not installed",
)

FIELD_INPUTS = Path(__file__).resolve().parents[2] / "shared" / "field-inputs"
DPI = 50
PT_PER_PX = 72 / DPI
A4 = (595.0, 842.0)

Text = tuple[float, float, float, str]  # x, y (baseline), size, text


@dataclass
class PageSpec:
    media: tuple[float, float, float, float] | None = (0.0, 0.0, *A4)
    texts: tuple[Text, ...] = ()
    rotate: int = 0
    crop: tuple[float, float, float, float] | None = None


def build_pdf(
    *pages: PageSpec,
    tree_media: tuple[float, ...] | None = None,
    tree_rotate: int | None = None,
    sig_fields: tuple[tuple[str, tuple[float, float, float, float]], ...] = (),
) -> bytes:
    """A PDF of ``pages``; ``tree_media``/``tree_rotate`` set on the page tree (inherited);
    ``sig_fields``: empty signature fields (name, rect) with a widget on page 1."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font,
            Subtype=pikepdf.Name.Type1,
            BaseFont=pikepdf.Name.Helvetica,
            Encoding=pikepdf.Name.WinAnsiEncoding,
        )
    )
    for spec in pages:
        ops = [f"BT /F1 {size} Tf {x} {y} Td ({text}) Tj ET" for x, y, size, text in spec.texts]
        page = pikepdf.Dictionary(
            Type=pikepdf.Name.Page,
            Resources=pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font)),
            Contents=pdf.make_stream("\n".join(ops).encode()),
        )
        if spec.media is not None:
            page.MediaBox = pikepdf.Array(spec.media)
        if spec.rotate:
            page.Rotate = spec.rotate
        if spec.crop is not None:
            page.CropBox = pikepdf.Array(spec.crop)
        pdf.pages.append(pikepdf.Page(page))
    if tree_media is not None:
        pdf.Root.Pages.MediaBox = pikepdf.Array(tree_media)
    if tree_rotate is not None:
        pdf.Root.Pages.Rotate = tree_rotate
    if sig_fields:
        fields = pikepdf.Array()
        first = pdf.pages[0].obj
        annots = pikepdf.Array()
        for name, rect in sig_fields:
            field = pdf.make_indirect(
                pikepdf.Dictionary(
                    FT=pikepdf.Name.Sig,
                    T=pikepdf.String(name),
                    Type=pikepdf.Name.Annot,
                    Subtype=pikepdf.Name.Widget,
                    Rect=pikepdf.Array(rect),
                    F=4,
                    P=first,
                )
            )
            fields.append(field)
            annots.append(field)
        first.Annots = annots
        pdf.Root.AcroForm = pikepdf.Dictionary(Fields=fields, SigFlags=0)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def nd30_page(media: tuple[float, float, float, float] = (0.0, 0.0, *A4)) -> PageSpec:
    """An A4 page laid out as Nghị định 30/2020 prescribes (ASCII for the standard font):
    agency top left, national motto top right, number and date, title, full-width body text,
    the recipients bottom left and the signer block (title, room to sign, name) bottom right."""
    x0, y0 = media[0], media[1]
    body = "Can cu Luat To chuc chinh quyen dia phuong ngay 19 thang 6 nam 2015 va cac van ban"
    texts: list[Text] = [
        (60, 790, 11, "UY BAN NHAN DAN"),
        (60, 776, 11, "TINH DEMO A"),
        (300, 790, 11, "CONG HOA XA HOI CHU NGHIA VIET NAM"),
        (340, 776, 11, "Doc lap - Tu do - Hanh phuc"),
        (60, 745, 11, "So: 123/QD-UBND"),
        (330, 745, 11, "Demo A, ngay 27 thang 11 nam 2026"),
        (250, 705, 13, "QUYET DINH"),
        (170, 688, 11, "Ve viec ban hanh quy che ky so"),
    ]
    texts += [(70, 650 - 16 * i, 11, body) for i in range(22)]
    texts += [
        (60, 250, 10, "Noi nhan:"),
        (60, 238, 9, "- Nhu Dieu 3;"),
        (60, 226, 9, "- Luu: VT."),
        (380, 250, 11, "CHU TICH"),
        (360, 150, 11, "Nguyen Van A"),
    ]
    return PageSpec(media=media, texts=tuple((x + x0, y + y0, s, t) for x, y, s, t in texts))


def simple_page(
    media: tuple[float, float, float, float] = (0.0, 0.0, *A4), **kwargs: Any
) -> PageSpec:
    """Text in the four corners of the page's MediaBox and in the middle."""
    x1, y1, x2, y2 = media
    texts = (
        (x1 + 30, y2 - 40, 12, "TOP LEFT"),
        (x2 - 120, y2 - 40, 12, "TOP RIGHT"),
        (x1 + 30, y1 + 40, 12, "BOTTOM LEFT"),
        (x2 - 140, y1 + 40, 12, "BOTTOM RIGHT"),
        ((x1 + x2) / 2 - 40, (y1 + y2) / 2, 12, "MIDDLE"),
    )
    return PageSpec(media=media, texts=texts, **kwargs)


@pytest.fixture(scope="module")
def key(dev_pki: tuple[DevPki, int]) -> LoadedKey:
    pki, _ = dev_pki
    return load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())


def sign(pdf: bytes, key: LoadedKey, **appearance: Any) -> bytes:
    spec = AppearanceSpec(**appearance)
    return asyncio.run(
        async_sign_pdf(pdf, key, SignOptions(level=SignatureLevel.B_B, appearance=spec))
    )


def render(pdf: bytes, page: int, directory: Path, name: str, *, crop: bool = True) -> Image.Image:
    """The page as a viewer shows it (the CropBox), or, ``crop=False``, the whole MediaBox."""
    path = directory / f"{name}.pdf"
    path.write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-r", str(DPI), "-png", "-f", str(page), "-l", str(page), "-singlefile"]
        + (["-cropbox"] if crop else [])
        + [str(path), str(directory / name)],
        check=True,
        timeout=60,
    )
    return Image.open(directory / f"{name}.png").convert("L")


_WORD = re.compile(r'<word xMin="([-\d.]+)" yMin="([-\d.]+)" xMax="([-\d.]+)" yMax="([-\d.]+)"')


def word_boxes(pdf: bytes, page: int) -> list[tuple[float, ...]]:
    """Word boxes of the visible page as displayed, in points (poppler, independently of
    the service's own geometry code)."""
    out = subprocess.run(
        ["pdftotext", "-bbox", "-cropbox", "-f", str(page), "-l", str(page), "-", "-"],
        input=pdf,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    return [tuple(float(v) for v in m.groups()) for m in _WORD.finditer(out)]


@dataclass
class Stamp:
    left: int
    top: int
    right: int
    bottom: int
    size: tuple[int, int]
    pixels: int
    changed: list[tuple[int, int]]


def stamp_of(unsigned: bytes, signed: bytes, page: int, directory: Path, name: str) -> Stamp:
    """Render both, take the changed pixels as the stamp's, and check them against the page's
    word boxes; the rendered PNGs stay in ``directory`` to be looked at."""
    before = render(unsigned, page, directory, f"{name}-unsigned")
    after = render(signed, page, directory, f"{name}-signed")
    assert before.size == after.size
    diff = ImageChops.difference(before, after).point(lambda v: 255 if v > 40 else 0)
    box = diff.getbbox()
    assert box is not None, "no stamp on the rendered page"
    data = diff.load()
    assert data is not None
    changed = [(x, y) for x in range(box[0], box[2]) for y in range(box[1], box[3]) if data[x, y]]
    words = word_boxes(unsigned, page)
    for x, y in changed:
        # The pixel's square in points, against every word box of the unsigned page.
        px1, py1, px2, py2 = x * PT_PER_PX, y * PT_PER_PX, (x + 1) * PT_PER_PX, (y + 1) * PT_PER_PX
        for wx1, wy1, wx2, wy2 in words:
            assert not (px1 < wx2 and wx1 < px2 and py1 < wy2 and wy1 < py2), (
                f"stamp pixel ({x},{y}) over a word box {(wx1, wy1, wx2, wy2)}"
            )
    width, height = diff.size
    # Inside the visible page and not clipped at its edge.
    assert box[0] > 0 and box[1] > 0 and box[2] < width and box[3] < height, (box, diff.size)
    # Nothing of it outside the visible page: the MediaBox render shows no more of it.
    whole = ImageChops.difference(
        render(unsigned, page, directory, f"{name}-unsigned-media", crop=False),
        render(signed, page, directory, f"{name}-signed-media", crop=False),
    ).point(lambda v: 255 if v > 40 else 0)
    outside = whole.histogram()[255]
    assert len(changed) >= 0.9 * outside, (len(changed), outside)
    return Stamp(*box, size=diff.size, pixels=len(changed), changed=changed)


def assert_upright_top_right(stamp: Stamp) -> None:
    width, height = stamp.size
    assert stamp.right - stamp.left > stamp.bottom - stamp.top, "stamp not upright"
    # The default stamp is two left-aligned lines of different lengths: upright, their left
    # edges line up; upside down (a 180° page drawn unturned), their right edges would.
    # Split the lines at the emptiest row of the stamp's middle half.
    ink = {y: 0 for y in range(stamp.top, stamp.bottom)}
    for _, y in stamp.changed:
        ink[y] += 1
    quarter = (stamp.bottom - stamp.top) // 4
    middle = min(range(stamp.top + quarter, stamp.bottom - quarter), key=ink.__getitem__)
    halves = [[x for x, y in stamp.changed if (y < middle) == upper] for upper in (True, False)]
    edges = [(min(xs), max(xs)) for xs in halves]
    assert abs(edges[0][0] - edges[1][0]) <= 2 and abs(edges[0][1] - edges[1][1]) > 5, edges
    assert (stamp.left + stamp.right) / 2 > width / 2, "stamp not on the right half"
    assert stamp.top < height / 2, "stamp not in the top half"


def test_nd30_page_stamp_clear_of_the_motto_and_text(tmp_path: Path, key: LoadedKey) -> None:
    unsigned = build_pdf(nd30_page())
    signed = sign(unsigned, key)
    stamp = stamp_of(unsigned, signed, 1, tmp_path, "nd30")
    assert_upright_top_right(stamp)
    assert stamp.pixels > 300


def test_nd30_signature_block_below_the_body(tmp_path: Path, key: LoadedKey) -> None:
    unsigned = build_pdf(nd30_page())
    placement = place(
        PdfFileReader(io.BytesIO(unsigned)), width=150, height=60, region="signature-block"
    )
    x1, y1, x2, y2 = placement.box
    # Between the signer's title (baseline 250) and name (baseline 150), right half.
    assert y1 > 150 + 8 and y2 < 250 - 2 and x1 > 595 / 2
    words = word_boxes(unsigned, 1)
    for wx1, wy1, wx2, wy2 in words:
        top, bottom = 842 - wy2, 842 - wy1  # pdftotext's v downwards, back to PDF y
        assert not (x1 < wx2 and wx1 < x2 and y1 < bottom and top < y2)


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_rotated_page_stamp_upright_top_right(rotate: int, tmp_path: Path, key: LoadedKey) -> None:
    unsigned = build_pdf(simple_page(rotate=rotate))
    signed = sign(unsigned, key)
    stamp = stamp_of(unsigned, signed, 1, tmp_path, f"rotate{rotate}")
    assert_upright_top_right(stamp)
    # The text reads upright too: poppler extracts it in reading order.
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=signed, capture_output=True, check=True
    ).stdout.decode()
    assert "Ký bởi" in text


def test_rotate_inherited_from_the_page_tree(tmp_path: Path, key: LoadedKey) -> None:
    unsigned = build_pdf(simple_page(), tree_rotate=90)
    stamp = stamp_of(unsigned, sign(unsigned, key), 1, tmp_path, "tree-rotate")
    assert_upright_top_right(stamp)


@pytest.mark.parametrize(
    "media",
    [(0.0, 0.0, 842.0, 1191.0), (0.0, 0.0, 595.0, 420.0)],
    ids=["A3", "A5-landscape"],
)
def test_inherited_mediabox(media: tuple[float, ...], tmp_path: Path, key: LoadedKey) -> None:
    page = simple_page(media)  # type: ignore[arg-type]
    page.media = None  # only on the page tree
    unsigned = build_pdf(page, tree_media=media)
    stamp = stamp_of(unsigned, sign(unsigned, key), 1, tmp_path, "inherited")
    assert_upright_top_right(stamp)
    assert stamp.size == (math.ceil(media[2] / PT_PER_PX), math.ceil(media[3] / PT_PER_PX))


def test_cropbox_smaller_than_mediabox(tmp_path: Path, key: LoadedKey) -> None:
    unsigned = build_pdf(simple_page(crop=(100.0, 150.0, 450.0, 700.0)))
    stamp = stamp_of(unsigned, sign(unsigned, key), 1, tmp_path, "cropbox")
    assert_upright_top_right(stamp)
    assert stamp.size == (math.ceil(350 / PT_PER_PX), math.ceil(550 / PT_PER_PX))


def test_mediabox_with_origin_100_100(tmp_path: Path, key: LoadedKey) -> None:
    unsigned = build_pdf(nd30_page((100.0, 100.0, 695.0, 942.0)))
    stamp = stamp_of(unsigned, sign(unsigned, key), 1, tmp_path, "origin")
    assert_upright_top_right(stamp)


def test_owner_password_document(tmp_path: Path, key: LoadedKey) -> None:
    """Encrypted with an empty user password and copying forbidden: still measured (PDFium
    reads the layout; pyHanko's objects are decrypted, not raw proxies)."""
    source = pikepdf.open(io.BytesIO(build_pdf(nd30_page())))
    out = io.BytesIO()
    source.save(
        out,
        encryption=pikepdf.Encryption(
            user="", owner="chu-so-huu", allow=pikepdf.Permissions(extract=False)
        ),
    )
    unsigned = out.getvalue()
    stamp = stamp_of(unsigned, sign(unsigned, key), 1, tmp_path, "owner-password")
    assert_upright_top_right(stamp)


def test_a6_page(tmp_path: Path, key: LoadedKey) -> None:
    unsigned = build_pdf(simple_page((0.0, 0.0, 298.0, 420.0)))
    stamp = stamp_of(unsigned, sign(unsigned, key), 1, tmp_path, "a6")
    assert_upright_top_right(stamp)


def test_stamp_wider_than_the_page_shrinks_or_is_refused(tmp_path: Path, key: LoadedKey) -> None:
    unsigned = build_pdf(simple_page((0.0, 0.0, 298.0, 420.0)))
    reader = PdfFileReader(io.BytesIO(unsigned))
    shrunk = place(reader, width=400, height=60, region="top-right")
    x1, y1, x2, y2 = shrunk.box
    assert 0 < x1 < x2 < 298 and 0 < y1 < y2 < 420
    assert x2 - x1 >= 400 * 0.5 - 0.01 and abs((x2 - x1) / (y2 - y1) - 400 / 60) < 0.05
    with pytest.raises(PlacementError) as refused:
        place(reader, width=400, height=60, region="top-right", when_full="refuse")
    assert refused.value.code == "NO_SPACE_FOR_SIGNATURE"
    with pytest.raises(PlacementError) as too_big:
        place(reader, width=1000, height=60, region="top-right")
    assert too_big.value.code == "NO_SPACE_FOR_SIGNATURE"
    # Through the engine: a 422-coded error, nothing signed.
    with pytest.raises(PlacementError):
        sign(unsigned, key, width=400, height=60, when_full="refuse")


@pytest.mark.parametrize(
    "media", [(0.0, 0.0, 1e9, 400.0), (0.0, 0.0, 400.0, 1e9), (0.0, 0.0, 3.0, 3.0)]
)
def test_absurd_page_sizes_are_placed_or_refused_quickly(media: tuple[float, ...]) -> None:
    import time

    reader = PdfFileReader(io.BytesIO(build_pdf(PageSpec(media=media))))  # type: ignore[arg-type]
    started = time.monotonic()
    try:
        placement = place(reader, width=220, height=52, region="top-right")
    except PlacementError as e:
        assert e.code == "NO_SPACE_FOR_SIGNATURE"
    else:
        x1, y1, x2, y2 = placement.box
        assert media[0] <= x1 < x2 <= media[2] and media[1] <= y1 < y2 <= media[3]
    assert time.monotonic() - started < 5


def test_full_page_next_page_or_refuse(key: LoadedKey) -> None:
    full = PageSpec(texts=tuple((20, 830 - 12 * i, 11, "X" * 100) for i in range(70)))
    unsigned = build_pdf(full, simple_page())
    reader = PdfFileReader(io.BytesIO(unsigned))
    assert (
        place(reader, width=220, height=52, region="top-right", when_full="next-page").page_index
        == 1
    )
    for when_full in ("refuse", "shrink"):
        with pytest.raises(PlacementError) as e:
            place(reader, width=220, height=52, region="top-right", when_full=when_full)  # type: ignore[arg-type]
        assert e.value.code == "NO_SPACE_FOR_SIGNATURE"


def test_later_signatures_stack_without_overlap(tmp_path: Path, key: LoadedKey) -> None:
    unsigned = build_pdf(nd30_page())
    once = sign(unsigned, key)
    twice = sign(once, key)
    thrice = sign(twice, key)
    second = stamp_of(once, twice, 1, tmp_path, "stack2")
    third = stamp_of(twice, thrice, 1, tmp_path, "stack3")
    first = stamp_of(unsigned, once, 1, tmp_path, "stack1")
    boxes = [(s.left, s.top, s.right, s.bottom) for s in (first, second, third)]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), boxes
    rects = [
        tuple(float(v) for v in s.sig_field.get_object()["/Rect"])
        for s in PdfFileReader(io.BytesIO(thrice)).embedded_signatures
    ]
    assert len(rects) == 3


def test_prepared_field_is_filled(tmp_path: Path, key: LoadedKey) -> None:
    rect = (350.0, 170.0, 540.0, 235.0)
    unsigned = build_pdf(nd30_page(), sig_fields=(("ChuKyLanhDao", rect),))
    signed = sign(unsigned, key)
    reader = PdfFileReader(io.BytesIO(signed))
    [embedded] = reader.embedded_signatures
    assert embedded.field_name == "ChuKyLanhDao"
    assert [float(v) for v in embedded.sig_field["/Rect"]] == list(rect)
    stamp = stamp_of(unsigned, signed, 1, tmp_path, "prepared")
    assert rect[0] / PT_PER_PX - 1 <= stamp.left and stamp.right <= rect[2] / PT_PER_PX + 1


@pytest.mark.parametrize("rotate", [90, 270])
def test_prepared_field_on_a_rotated_page_reads_upright(
    rotate: int, tmp_path: Path, key: LoadedKey
) -> None:
    # Tall in user space: wide as the reader sees the turned page.
    rect = (400.0, 500.0, 460.0, 760.0)
    unsigned = build_pdf(simple_page(rotate=rotate), sig_fields=(("ChuKyLanhDao", rect),))
    signed = sign(unsigned, key)
    assert PdfFileReader(io.BytesIO(signed)).embedded_signatures[0].field_name == "ChuKyLanhDao"
    stamp = stamp_of(unsigned, signed, 1, tmp_path, f"prepared-rotate{rotate}")
    assert stamp.right - stamp.left > 2 * (stamp.bottom - stamp.top), "stamp not upright"


def test_named_field_missing_or_signed(key: LoadedKey) -> None:
    fields = (("ChuKyLanhDao", (350.0, 170.0, 540.0, 235.0)), ("DauCoQuan", (60, 60, 160, 160)))
    unsigned = build_pdf(nd30_page(), sig_fields=fields)
    reader = PdfFileReader(io.BytesIO(unsigned))
    # Two empty fields and none named: placed by rule, a new field.
    assert place(reader, width=220, height=52, region="top-right").existing_field is None
    chosen = place(reader, width=220, height=52, region="top-right", field_name="DauCoQuan")
    assert chosen.existing_field == "DauCoQuan" and chosen.box == (60, 60, 160, 160)
    with pytest.raises(PlacementError) as missing:
        place(reader, width=220, height=52, region="top-right", field_name="KhongCo")
    assert missing.value.code == "SIGNATURE_FIELD_NOT_FOUND"
    signed = asyncio.run(
        async_sign_pdf(
            unsigned,
            key,
            SignOptions(
                level=SignatureLevel.B_B, appearance=AppearanceSpec(), field_name="DauCoQuan"
            ),
        )
    )
    with pytest.raises(PlacementError) as already:
        place(
            PdfFileReader(io.BytesIO(signed)),
            width=220,
            height=52,
            region="top-right",
            field_name="DauCoQuan",
        )
    assert already.value.code == "SIGNATURE_FIELD_ALREADY_SIGNED"


def test_seal_over_left_third_of_the_signature(key: LoadedKey) -> None:
    rect = (350.0, 170.0, 540.0, 235.0)
    unsigned = build_pdf(nd30_page(), sig_fields=(("ChuKyLanhDao", rect),))
    signed = sign(unsigned, key)
    seal = place(
        PdfFileReader(io.BytesIO(signed)),
        width=100,
        height=100,
        region="signature-block",
        over_signature="ChuKyLanhDao",
    )
    x1, y1, x2, y2 = seal.box
    third = rect[0] + (rect[2] - rect[0]) / 3
    assert x1 < third and x2 > rect[0]  # overlaps the left third
    assert abs((x1 + x2) / 2 - (rect[0] + (rect[2] - rect[0]) / 6)) < 0.5
    assert (x2 - x1, y2 - y1) == pytest.approx((100, 100), abs=0.02)


@pytest.mark.skipif(not FIELD_INPUTS.is_dir(), reason="../shared/field-inputs absent")
@pytest.mark.parametrize(
    "name",
    ["c05b-form-empty-sigfield.pdf", "c16a-rotate90.pdf", "c16c-inherited-mediabox-a5land.pdf"],
)
def test_field_inputs(name: str, tmp_path: Path, key: LoadedKey) -> None:
    unsigned = (FIELD_INPUTS / name).read_bytes()
    signed = sign(unsigned, key)
    reader = PdfFileReader(io.BytesIO(signed))
    [embedded] = reader.embedded_signatures
    if name.startswith("c05b"):
        assert embedded.field_name == "ChuKyLanhDao"
        names = [name for name, _, _ in enumerate_sig_fields(reader)]
        assert names == ["ChuKyLanhDao"]  # no new field
        stamp_of(unsigned, signed, 1, tmp_path, name)
        return
    assert_upright_top_right(stamp_of(unsigned, signed, 1, tmp_path, name))


# The request's ``field_name`` through the API: one-step, two-step (step 1) and batch.
TWO_FIELDS = (("ChuKyLanhDao", (350.0, 170.0, 540.0, 235.0)), ("DauCoQuan", (60, 60, 160, 160)))


def _auth(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}


def _post_sign(api: Any, credentials: dict[str, Any], pdf: bytes, **form: str) -> Any:
    return api.post(
        "/v1/signatures",
        headers=_auth(credentials),
        data={"profile": "agency-a-seal", "level": "B-B", **form},
        files={"file": ("quyet-dinh.pdf", pdf, "application/pdf")},
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_api_field_name(api: Any, services: Services, credentials: dict[str, Any]) -> None:
    unsigned = build_pdf(nd30_page(), sig_fields=TWO_FIELDS)
    before = snapshot(services)
    missing = _post_sign(api, credentials, unsigned, field_name="KhongCo")
    assert missing.status_code == 422, missing.text
    assert missing.json()["code"] == "SIGNATURE_FIELD_NOT_FOUND"
    assert missing.json()["details"] == {"field_name": "KhongCo"}
    assert_nothing_written(before, services)

    signed = _post_sign(api, credentials, unsigned, field_name="DauCoQuan")
    assert signed.status_code == 201, signed.text
    content = api.get(signed.json()["document"]["download_url"], headers=_auth(credentials))
    reader = PdfFileReader(io.BytesIO(content.content))
    assert [s.field_name for s in reader.embedded_signatures] == ["DauCoQuan"]

    again = _post_sign(api, credentials, content.content, field_name="DauCoQuan")
    assert again.status_code == 422 and again.json()["code"] == "SIGNATURE_FIELD_ALREADY_SIGNED"

    batch = api.post(
        "/v1/signatures/batch",
        headers=_auth(credentials),
        data={"profile": "agency-a-seal", "level": "B-B", "field_name": "ChuKyLanhDao"},
        files=[
            ("files", ("a.pdf", unsigned, "application/pdf")),
            ("files", ("b.pdf", build_pdf(nd30_page()), "application/pdf")),
        ],
    )
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert results[0]["status"] == "signed"
    assert results[1]["error"]["code"] == "SIGNATURE_FIELD_NOT_FOUND"

    assert services.dev_pki is not None
    pem = services.dev_pki.cert_path("officer").read_bytes()
    two_step = api.post(
        "/v1/signatures/external",
        headers=_auth(credentials),
        data={"profile": "agency-a-officer", "level": "B-B", "field_name": "KhongCo"},
        files={
            "file": ("to-trinh.pdf", unsigned, "application/pdf"),
            "certificate": ("officer.pem", pem),
        },
    )
    assert two_step.status_code == 422 and two_step.json()["code"] == "SIGNATURE_FIELD_NOT_FOUND"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_api_placed_signatures_verify(api: Any, credentials: dict[str, Any]) -> None:
    """A stamp turned upright on a rotated page, and one in a prepared field, verify."""
    for unsigned in (
        build_pdf(simple_page(rotate=90)),
        build_pdf(nd30_page(), sig_fields=TWO_FIELDS[:1]),
    ):
        signed = _post_sign(api, credentials, unsigned, level="B-T")
        assert signed.status_code == 201, signed.text
        content = api.get(signed.json()["document"]["download_url"], headers=_auth(credentials))
        report = api.post(
            "/v1/verifications",
            files={"file": ("signed.pdf", content.content, "application/pdf")},
        )
        assert report.status_code == 200
        assert report.json()["verdict"] == "TOTAL_PASSED", report.json()


def test_text_layout_is_bounded_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A page whose text takes PDFium too long (a few kB of compressed content stream showing
    1.5 million characters) is PAGE_LAYOUT_UNAVAILABLE, never a hang; the worker is killed and
    the next placement gets a fresh one."""
    import zlib

    from signing_service.signing import textlayout

    monkeypatch.setattr(textlayout.default(), "timeout", 0.3)
    slow = pikepdf.open(io.BytesIO(build_pdf(nd30_page())))
    content = pikepdf.Stream(slow, zlib.compress(b"BT /F1 1 Tf " + b"1 0 Td (x) Tj " * 1_500_000))
    content.Filter = pikepdf.Name.FlateDecode
    slow.pages[0].obj.Contents = slow.make_indirect(content)
    out = io.BytesIO()
    slow.save(out)
    with pytest.raises(PlacementError) as e:
        place(PdfFileReader(io.BytesIO(out.getvalue())), width=220, height=52, region="top-right")
    assert e.value.code == "PAGE_LAYOUT_UNAVAILABLE"
    reader = PdfFileReader(io.BytesIO(build_pdf(nd30_page())))
    assert place(reader, width=220, height=52, region="top-right").page_index == 0


def test_upright_text_stamp_still_gets_the_signing_time(key: LoadedKey) -> None:
    """A text stamp turned for a rotated page is still a text stamp to pyHanko: ``%(ts)s``
    is filled in (the kinds lane's stamps may use it)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.text import TextBoxStyle
    from pyhanko.sign.fields import SigFieldSpec
    from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner
    from pyhanko.stamp import TextStampStyle

    from signing_service.signing.appearance import default_font
    from signing_service.signing.placement import upright

    unsigned = build_pdf(simple_page(rotate=90))
    writer = IncrementalPdfFileWriter(io.BytesIO(unsigned))
    placement = place(writer.prev, width=220, height=52, region="top-right")
    style = TextStampStyle(
        stamp_text="Ky luc %(ts)s",
        timestamp_format="%Y-%m-%dT%H:%M",
        text_box_style=TextBoxStyle(font=GlyphAccumulatorFactory(str(default_font()))),
    )
    signer = PdfSigner(
        PdfSignatureMetadata(field_name="Signature1"),
        signer=key.signer,
        stamp_style=upright(style, placement.rotate),
        new_field_spec=SigFieldSpec("Signature1", on_page=0, box=placement.box),  # type: ignore[arg-type]
    )
    out = io.BytesIO()
    asyncio.run(signer.async_sign_pdf(writer, output=out))
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=out.getvalue(), capture_output=True, check=True
    ).stdout.decode()
    assert re.search(r"Ky luc 20\d\d-\d\d-\d\dT\d\d:\d\d", text), text


def test_profile_settings_name_the_field_and_the_rule(key: LoadedKey) -> None:
    """The profile's ``appearance.field_name`` and ``when_full`` reach the placement."""
    from pydantic import ValidationError

    from signing_service.services.profile_rules import AppearanceSettings, appearance_spec

    with pytest.raises(ValidationError):
        AppearanceSettings.model_validate({"when_full": "overlap"})
    with pytest.raises(ValidationError):
        AppearanceSettings.model_validate({"field_name": ""})
    spec = appearance_spec({"field_name": "DauCoQuan"})
    assert spec is not None
    unsigned = build_pdf(nd30_page(), sig_fields=TWO_FIELDS)
    signed = asyncio.run(
        async_sign_pdf(unsigned, key, SignOptions(level=SignatureLevel.B_B, appearance=spec))
    )
    assert PdfFileReader(io.BytesIO(signed)).embedded_signatures[0].field_name == "DauCoQuan"

    full = PageSpec(texts=tuple((20, 830 - 12 * i, 11, "X" * 100) for i in range(70)))
    spec = appearance_spec({"when_full": "next-page"})
    assert spec is not None
    signed = asyncio.run(
        async_sign_pdf(
            build_pdf(full, simple_page()),
            key,
            SignOptions(level=SignatureLevel.B_B, appearance=spec),
        )
    )
    reader = PdfFileReader(io.BytesIO(signed))
    widget = reader.embedded_signatures[0].sig_field
    second = reader.root["/Pages"]["/Kids"].raw_get(1)
    assert widget.raw_get("/P").idnum == second.idnum


def sign_placed(pdf: bytes, key: LoadedKey, **where: Any) -> bytes:
    """Sign with today's text stamp at ``place(**where)`` (the engine places by the top-right
    rule until appearance kinds choose the region)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign.fields import SigFieldSpec
    from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner

    from signing_service.signing.placement import upright

    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    placement = place(writer.prev, **where)
    name = placement.existing_field or f"Signature{len(writer.prev.embedded_signatures) + 1}"
    signer = PdfSigner(
        PdfSignatureMetadata(field_name=name),
        signer=key.signer,
        stamp_style=upright(
            AppearanceSpec().stamp("Nguyen Van A", None, datetime.now(UTC)), placement.rotate
        ),
        new_field_spec=None
        if placement.existing_field
        else SigFieldSpec(name, on_page=placement.page_index, box=placement.box),  # type: ignore[arg-type]
    )
    out = io.BytesIO()
    asyncio.run(signer.async_sign_pdf(writer, output=out))
    return out.getvalue()


def test_signature_block_rendered_between_title_and_name(tmp_path: Path, key: LoadedKey) -> None:
    unsigned = build_pdf(nd30_page(), simple_page(), nd30_page())
    signed = sign_placed(unsigned, key, width=150, height=60, region="signature-block")
    stamp = stamp_of(unsigned, signed, 3, tmp_path, "signature-block")
    top, bottom = stamp.top * PT_PER_PX, stamp.bottom * PT_PER_PX
    # Below the last body line (baseline 314) and above the signer's name (baseline 150).
    assert top > 842 - 314 and bottom < 842 - 150, (top, bottom)
    assert stamp.left * PT_PER_PX > 595 / 2
    # A second person signs: below or beside the first, never over it.
    again = sign_placed(signed, key, width=150, height=60, region="signature-block")
    second = stamp_of(signed, again, 3, tmp_path, "signature-block-2")
    assert second.top >= stamp.bottom or second.left >= stamp.right or second.right <= stamp.left


@pytest.mark.parametrize("rotate", [0, 90])
def test_signature_block_on_a_short_page_goes_below_the_text(
    rotate: int, tmp_path: Path, key: LoadedKey
) -> None:
    """No full-width body line (a short notice; rotated like c16a): the signature block is
    at the bottom right of the page as the reader sees it, below the lowest text, not beside
    the motto at the top (issue 10, new-user review item 8)."""
    texts = (
        (60, 780, 11, "UY BAN NHAN DAN"),
        (330, 780, 11, "CONG HOA XA HOI CHU NGHIA"),
        (250, 700, 13, "THONG BAO"),
        (220, 680, 11, "Lich tiep cong dan"),
        (280, 30, 9, "1"),  # a page number: a footer, not the end of the text
    )
    unsigned = build_pdf(PageSpec(texts=texts, rotate=rotate))
    signed = sign_placed(unsigned, key, width=150, height=60, region="signature-block")
    stamp = stamp_of(unsigned, signed, 1, tmp_path, f"short{rotate}")
    view_h = A4[0] if rotate else A4[1]
    words = [w for w in word_boxes(unsigned, 1) if w[1] < 0.9 * view_h]  # not the footer
    lowest = max(w[3] for w in words) / PT_PER_PX
    width, _height = stamp.size
    assert stamp.top > lowest, (stamp, lowest)
    assert (stamp.left + stamp.right) / 2 > width / 2, "right half"
