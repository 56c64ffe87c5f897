"""Appearance kinds rendered and looked at (issue 10; Nghị định 30/2020, Appendix I).

Each kind is signed onto an A4 page laid out as Nghị định 30/2020 (agency and number top left,
national motto top right, title, body, an empty signature block bottom right), rendered with
``pdftoppm -r 72`` and judged from its pixels: the person stamp's blue ink, the seal's red ink
over the left third of it, the text blocks inside the top-right region, nothing for ``none``.
``SIGNING_SERVICE_APPEARANCE_DOCS=1`` keeps the renderings in docs/appearance/ (small, -r 50).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pikepdf
import pytest
from PIL import Image
from pyhanko.pdf_utils.reader import PdfFileReader

from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.appearance import KindAppearance, plan_stamp, readable_time
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.signing.stamp_images import (
    MAX_IMAGE_BYTES,
    ImageRejected,
    cached_image,
    screen_png,
    stamp_image,
)
from tests.support.images import blue_scribble, png_bomb, png_bytes, red_seal

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "appearance"
A4 = (595, 842)
MOMENT = datetime(2026, 11, 27, 7, 5, 9, tzinfo=UTC)
needs_poppler = pytest.mark.skipif(
    shutil.which("pdftoppm") is None, reason="poppler-utils not installed (make test-deps)"
)


# --- Inputs the tests build -----------------------------------------------------------------


def nd30_page() -> bytes:
    """One A4 page laid out as Nghị định 30/2020 prescribes (margins 30/15/20/20 mm): the
    issuing agency and the number top left, the national motto top right, the place and date,
    the title, the body, and an empty signature block bottom right (base-14 Helvetica, so the
    Vietnamese is written without marks)."""
    lines = [
        (11, 100, 772, "UBND TINH DEMO"),
        (11, 110, 758, "SO TU PHAP"),
        (11, 100, 736, "So: 123/QD-STP"),
        (11, 300, 772, "CONG HOA XA HOI CHU NGHIA VIET NAM"),
        (11, 340, 758, "Doc lap - Tu do - Hanh phuc"),
        (10, 330, 736, "Demo, ngay 27 thang 11 nam 2026"),
        (13, 250, 690, "QUYET DINH"),
        (11, 190, 672, "Ve viec cong nhan ket qua thu tuc hanh chinh"),
    ]
    body = "Can cu Luat Giao dich dien tu ngay 22 thang 6 nam 2023; theo de nghi cua ..."
    lines += [(11, 85, 640 - 16 * n, body) for n in range(16)]
    lines += [(10, 85, 330, "Noi nhan:"), (9, 85, 316, "- Nhu Dieu 3;"), (9, 85, 304, "- Luu: VT.")]
    content = b" ".join(
        b"BT /F1 %d Tf %d %d Td (%s) Tj ET" % (size, x, y, text.encode())
        for size, x, y, text in lines
    )
    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
        )
    )
    page = pdf.add_blank_page(page_size=A4)
    page.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
    page.Contents = pdf.make_stream(content)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


# --- Signing and rendering ----------------------------------------------------------------


@pytest.fixture(scope="module")
def key(dev_pki: tuple[DevPki, int]):  # type: ignore[no-untyped-def]
    pki, _ = dev_pki
    return load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())


def sign(pdf: bytes, key, appearance: KindAppearance) -> bytes:  # type: ignore[no-untyped-def]
    options = SignOptions(level=SignatureLevel.B_B, appearance=appearance)
    return asyncio.run(async_sign_pdf(pdf, key, options, now=MOMENT))


def render(pdf: bytes, tmp_path: Path, dpi: int = 72, name: str = "page") -> Image.Image:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-r", str(dpi), "-png", "-f", "1", "-l", "1", str(path), str(tmp_path / name)],
        check=True,
    )
    png = next(tmp_path.glob(f"{name}*.png"))
    image = Image.open(png).convert("RGB")
    png.unlink()
    return image


def keep(pdf: bytes, tmp_path: Path, name: str, original: bytes | None = None) -> None:
    """With SIGNING_SERVICE_APPEARANCE_DOCS=1: the page at 50 dpi in docs/appearance/, and
    with ``original`` (the page before signing) the stamps' area at 120 dpi."""
    if os.environ.get("SIGNING_SERVICE_APPEARANCE_DOCS") != "1":
        return
    DOCS.mkdir(parents=True, exist_ok=True)
    render(pdf, tmp_path, dpi=50, name=f"doc-{name}").save(DOCS / f"{name}.png", optimize=True)
    if original is not None:
        after = render(pdf, tmp_path, dpi=120, name=f"crop-{name}")
        x1, y1, x2, y2 = bbox(changed(render(original, tmp_path, dpi=120, name="crop-0"), after))
        pad = 60
        box = (
            max(0, x1 - pad),
            max(0, y1 - pad),
            min(after.width, x2 + pad),
            min(after.height, y2 + pad),
        )
        after.crop(box).save(DOCS / f"{name}-stamp.png", optimize=True)


def pixels(image: Image.Image, test) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    width, height = image.size
    data = image.load()
    assert data is not None
    return [(x, y) for y in range(height) for x in range(width) if test(data[x, y])]


def is_blue(p: tuple[int, int, int]) -> bool:
    return p[2] > 140 and p[0] < 110 and p[2] - p[1] > 60


def is_red(p: tuple[int, int, int]) -> bool:
    return p[0] > 150 and p[1] < 110 and p[2] < 110


def changed(before: Image.Image, after: Image.Image) -> list[tuple[int, int]]:
    a, b = before.load(), after.load()
    assert a is not None and b is not None
    width, height = before.size
    return [
        (x, y)
        for y in range(height)
        for x in range(width)
        if sum(abs(u - v) for u, v in zip(a[x, y], b[x, y], strict=True)) > 60
    ]


def bbox(points: list[tuple[int, int]]) -> tuple[int, int, int, int]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def signature_image() -> object:
    return stamp_image(blue_scribble(), width_mm=45.0, height_mm=18.0)


def seal_image() -> object:
    return stamp_image(red_seal(), width_mm=34.0, height_mm=34.0)


# --- Rendered kinds -----------------------------------------------------------------------


@needs_poppler
def test_person_then_seal(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    page = nd30_page()
    person = KindAppearance(kind="person", title="GIÁM ĐỐC", signature=signature_image())
    signed = sign(page, key, person)
    blue = pixels(render(signed, tmp_path), is_blue)
    assert len(blue) > 300, "the signature image is drawn, blue as uploaded"
    keep(signed, tmp_path, "person", original=page)
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=signed, capture_output=True, check=True
    ).stdout.decode()
    assert "GIÁM ĐỐC" in text and "14:05:09 ngày 27/11/2026 (+07:00)" in text

    sealed = sign(signed, key, KindAppearance(kind="seal", seal=seal_image()))
    image = render(sealed, tmp_path)
    red = pixels(image, is_red)
    assert len(red) > 300
    keep(sealed, tmp_path, "person-seal", original=page)
    bx1, by1, bx2, by2 = bbox(blue)
    left_third = bx1 + (bx2 - bx1) / 3
    over = [(x, y) for x, y in red if bx1 <= x <= left_third and by1 <= y <= by2]
    assert len(over) > 50, "the seal covers the left third of the signature image"
    rx1, _, rx2, _ = bbox(red)
    assert (rx1 + rx2) / 2 < (bx1 + bx2) / 2, "the seal sits on the left of the signature"
    assert rx2 < bx2, "the seal leaves the right of the signature free"
    # One stamp with text, one without: never two text stamps on top of each other.
    reader = PdfFileReader(io.BytesIO(sealed))
    assert len(reader.embedded_signatures) == 2


@needs_poppler
def test_seal_alone_inside_the_page(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    """Without a person signature before it, the seal goes to the signature block, whole."""
    signed = sign(nd30_page(), key, KindAppearance(kind="seal", seal=seal_image()))
    image = render(signed, tmp_path)
    red = pixels(image, is_red)
    x1, y1, x2, y2 = bbox(red)
    width, height = image.size
    assert x1 > 0 and x2 < width - 1 and y1 > 0 and y2 < height - 1
    # 34 mm at 72 dpi is 96 px across (the ring's outer edge, anti-aliased).
    assert 90 <= x2 - x1 + 1 <= 98 and 90 <= y2 - y1 + 1 <= 98, (x1, y1, x2, y2)
    assert not pixels(image, is_blue)


@needs_poppler
@pytest.mark.parametrize(
    ("kind", "settings", "expected"),
    [
        ("copy", {"copy_kind": "SAO Y", "unit": "Sở Tư pháp tỉnh Demo A"}, "SAO Y"),
        ("copy", {"copy_kind": "TRÍCH SAO", "unit": "Văn phòng UBND tỉnh"}, "TRÍCH SAO"),
        ("annex", {"document_number": "123/QĐ-STP"}, "123/QĐ-STP"),
        ("digitised", {"unit": "Trung tâm Phục vụ hành chính công"}, "Số hóa"),
    ],
)
def test_text_blocks_top_right(tmp_path: Path, key, kind, settings, expected) -> None:  # type: ignore[no-untyped-def]
    page = nd30_page()
    before = render(page, tmp_path, name="before")
    signed = sign(page, key, KindAppearance(kind=kind, margin=6.0, **settings))
    after = render(signed, tmp_path)
    ink = changed(before, after)
    assert len(ink) > 100
    x1, y1, x2, y2 = bbox(ink)
    width, height = after.size
    # Top right of page 1: right half, top 7 % of the height, inside the page.
    assert x1 > width / 2 and x2 < width and y1 >= 0 and y2 < 0.07 * height, (x1, y1, x2, y2)
    # Upright black text, no image: every new pixel is grey.
    data = after.load()
    assert all(max(data[p]) - min(data[p]) < 40 for p in ink)
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=signed, capture_output=True, check=True
    ).stdout.decode()
    assert expected in text
    assert "2026-11-27T14:05:09+07:00" in text
    if kind == "copy" and expected == "SAO Y":
        keep(signed, tmp_path, "copy", original=page)


@needs_poppler
def test_none_adds_no_pixels(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    page = nd30_page()
    signed = sign(page, key, KindAppearance(kind="none"))
    assert not changed(render(page, tmp_path, name="before"), render(signed, tmp_path))
    assert len(PdfFileReader(io.BytesIO(signed)).embedded_signatures) == 1


def test_line_spacing_leaves_room_for_stacked_marks() -> None:
    from fontTools.ttLib import TTFont

    from signing_service.signing.appearance import ASCENT_EM, DESCENT_EM, LINE_EM, kinds_font

    font = TTFont(str(kinds_font()))
    glyf, cmap, upem = font["glyf"], font.getBestCmap(), font["head"].unitsPerEm
    tops = [glyf[cmap[ord(c)]].yMax / upem for c in "ỂẤỖẶẪỄ"]
    bottoms = [glyf[cmap[ord(c)]].yMin / upem for c in "gyqpỵ"]
    assert max(tops) < ASCENT_EM and -min(bottoms) < DESCENT_EM
    assert max(tops) - min(bottoms) < LINE_EM


def test_person_time_is_readable() -> None:
    assert readable_time(MOMENT) == "14:05:09 ngày 27/11/2026 (+07:00)"
    plan = plan_stamp("copy", _texts(), font_size=10)
    assert plan is not None and plan.region == "top-right"
    with pytest.raises(ValueError, match="unknown appearance kind"):
        plan_stamp("stamp", _texts())


def _texts():  # type: ignore[no-untyped-def]
    from signing_service.signing.appearance import StampTexts

    return StampTexts(signer_name="Nguyễn Văn A", moment=MOMENT, unit="Sở Tư pháp")


def test_seal_is_drawn_at_its_real_size() -> None:
    plan = plan_stamp("seal", _texts(), seal=seal_image())
    assert plan is not None and plan.over_signature
    # 34 mm at 72 pt per inch.
    assert plan.width == pytest.approx(34 * 72 / 25.4) and plan.height == pytest.approx(96.38, 0.01)


# --- Screening --------------------------------------------------------------------------


def test_screening_accepts_transparent_png() -> None:
    screened = screen_png(blue_scribble())
    assert (screened.width, screened.height) == (400, 160)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GIF89a" + b"\x00" * 100, "not_png"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not_png"),  # PNG signature, nothing valid after
        (
            png_bytes(Image.new("RGBA", (40, 40), (0, 0, 255, 0))).replace(b"IDAT", b"IDAX"),
            "not_png",
        ),
        (png_bomb(), "too_large"),
        (png_bytes(Image.new("L", (3000, 20), 0)), "too_large"),
        (png_bytes(Image.new("RGB", (64, 64), (0, 0, 255))), "no_transparency"),
        (png_bytes(Image.new("RGBA", (64, 64), (0, 0, 255, 255))), "no_transparency"),
    ],
    ids=["gif", "png-signature-only", "corrupt", "bomb", "too-wide", "rgb", "opaque-alpha"],
)
def test_screening_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as refused:
        screen_png(data)
    assert refused.value.reason == reason


def test_screening_refuses_oversized_bytes() -> None:
    noise = Image.frombytes("RGBA", (1024, 1024), os.urandom(1024 * 1024 * 4))
    data = png_bytes(noise)
    assert len(data) > MAX_IMAGE_BYTES
    with pytest.raises(ImageRejected) as refused:
        screen_png(data)
    assert refused.value.reason == "too_large"


def test_decoded_once_per_content() -> None:
    data = red_seal()
    first = stamp_image(data, width_mm=30.0, height_mm=30.0)
    import hashlib

    assert cached_image(hashlib.sha256(data).hexdigest(), 30.0, 30.0) is first
    assert stamp_image(data, width_mm=30.0, height_mm=30.0) is first


# --- A signer block the page already prints (issue 10, new-user review item 1) ------------


def _cn(key) -> str:  # type: ignore[no-untyped-def]
    return str(key.signing_cert.subject.native["common_name"])


def _word_boxes(pdf: bytes, tmp_path: Path) -> list[tuple[str, float, float, float, float]]:
    """poppler's word boxes (an independent tool): (word, x1, y1, x2, y2), points, y down."""
    import re

    path = tmp_path / "bbox.pdf"
    path.write_bytes(pdf)
    html = subprocess.run(
        ["pdftotext", "-bbox", str(path), "-"], capture_output=True, check=True
    ).stdout.decode()
    return [
        (w, float(a), float(b), float(c), float(d))
        for a, b, c, d, w in re.findall(
            r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)<', html
        )
    ]


def _line_box(words, text: str):  # type: ignore[no-untyped-def]
    """The box of the last run of consecutive words spelling ``text`` (the signer block is
    the end of the page)."""
    parts = text.split()
    for i in reversed(range(len(words) - len(parts) + 1)):
        run = words[i : i + len(parts)]
        if [w[0] for w in run] == parts:
            return (
                min(w[1] for w in run),
                min(w[2] for w in run),
                max(w[3] for w in run),
                max(w[4] for w in run),
            )
    raise AssertionError(f"{text!r} not on the page")


@needs_poppler
@pytest.mark.parametrize(
    ("titles", "gap_pt", "with_time"),
    [
        (("GIÁM ĐỐC",), 85.0, True),  # ~30 mm: the image and the time
        (("KT. GIÁM ĐỐC", "PHÓ GIÁM ĐỐC"), 62.0, False),  # ~22 mm: the image alone, shrunk
    ],
)
def test_person_in_the_printed_signer_block(tmp_path: Path, key, titles, gap_pt, with_time) -> None:  # type: ignore[no-untyped-def]
    from tests.support import nd30

    name = _cn(key)
    page, _ = nd30.decision(name, titles, gap_pt=gap_pt)
    person = KindAppearance(kind="person", title="GIÁM ĐỐC", signature=signature_image())
    signed = sign(page, key, person)
    image = render(signed, tmp_path)
    blue = pixels(image, is_blue)
    assert len(blue) > 300
    words = _word_boxes(page, tmp_path)
    title = _line_box(words, titles[-1])
    printed = _line_box(words, name)
    bx1, by1, bx2, by2 = bbox(blue)  # 72 dpi: pixels are points
    assert title[3] <= by1 and by2 <= printed[1], (title, (bx1, by1, bx2, by2), printed)
    centre = (printed[0] + printed[2]) / 2
    assert abs((bx1 + bx2) / 2 - centre) < 6, "centred on the printed name"
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=signed, capture_output=True, check=True
    ).stdout.decode()
    before = subprocess.run(
        ["pdftotext", "-", "-"], input=page, capture_output=True, check=True
    ).stdout.decode()
    assert text.count(name) == before.count(name), "no second name"
    assert text.count(titles[-1]) == before.count(titles[-1]), "no second title"
    assert ("14:05:09 ngày 27/11/2026 (+07:00)" in text) == with_time, "the time if it fits"
    keep(signed, tmp_path, "person-in-block", original=page)

    sealed = sign(signed, key, KindAppearance(kind="seal", seal=seal_image()))
    red = pixels(render(sealed, tmp_path), is_red)
    left_third = bx1 + (bx2 - bx1) / 3
    assert len([p for p in red if bx1 <= p[0] <= left_third and by1 <= p[1] <= by2]) > 50


@needs_poppler
def test_person_gap_too_small_gets_the_full_stamp(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    """Under 12 mm between title and name: the full stamp (title, image, name, time) below."""
    from tests.support import nd30

    name = _cn(key)
    page, name_y = nd30.decision(name, gap_pt=30.0)
    person = KindAppearance(kind="person", title="GIÁM ĐỐC", signature=signature_image())
    signed = sign(page, key, person)
    blue = pixels(render(signed, tmp_path), is_blue)
    assert blue and bbox(blue)[1] > nd30.A4[1] - name_y, "below the printed name"
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=signed, capture_output=True, check=True
    ).stdout.decode()
    before = subprocess.run(
        ["pdftotext", "-", "-"], input=page, capture_output=True, check=True
    ).stdout.decode()
    assert text.count(name) == before.count(name) + 1, "the full stamp prints the name"


@needs_poppler
@pytest.mark.parametrize(
    ("kind", "settings", "top_mm"),
    [
        ("copy", {"copy_kind": "SAO Y", "unit": "Sở Tư pháp tỉnh Demo A"}, 20.0),
        ("copy", {"copy_kind": "TRÍCH SAO", "unit": "Văn phòng UBND tỉnh"}, 25.0),
        ("annex", {"document_number": "123/QĐ-STP", "unit": "Sở Tư pháp"}, 20.0),
        ("digitised", {"unit": "Trung tâm Phục vụ hành chính công"}, 20.0),
    ],
)
def test_text_blocks_in_the_top_margin(tmp_path: Path, key, kind, settings, top_mm) -> None:  # type: ignore[no-untyped-def]
    """An ND30 page whose header starts 20-25 mm from the top (profile margin as default):
    the block goes top right in the margin above the motto, not beside a body line (issue
    10, new-user review item 2)."""
    from tests.support import nd30

    page, _ = nd30.decision(None, top_mm=top_mm)
    before = render(page, tmp_path, name="before")
    signed = sign(page, key, KindAppearance(kind=kind, **settings))
    after = render(signed, tmp_path)
    x1, y1, x2, y2 = bbox(changed(before, after))
    motto = _line_box(_word_boxes(page, tmp_path), "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM")
    width, _ = after.size
    assert x1 > width / 2 and x2 < width, (x1, x2)
    assert y2 <= motto[1], ("above the motto", (x1, y1, x2, y2), motto)
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=signed, capture_output=True, check=True
    ).stdout.decode()
    assert "2026-11-27T14:05:09+07:00" in text


# --- texts: the profile's title, long agency names ----------------------------------------


def test_profile_title_wins_and_may_take_two_lines() -> None:
    """Ký thay (Nghị định 30/2020 Art. 13): "KT. GIÁM ĐỐC" over "PHÓ GIÁM ĐỐC" cannot come from a
    certificate whose title says "Phó Giám đốc": the profile's title is drawn, both lines."""
    person = KindAppearance(
        kind="person", title="KT. GIÁM ĐỐC\nPHÓ GIÁM ĐỐC", signature=signature_image()
    )
    plan = person.plan("Nguyễn Văn An", "Sở Tư pháp", MOMENT, cert_title="Phó Giám đốc")
    assert plan is not None
    assert [line.text for line in plan.style.top] == ["KT. GIÁM ĐỐC", "PHÓ GIÁM ĐỐC"]
    one_line = KindAppearance(kind="person", title="GIÁM ĐỐC", signature=signature_image())
    taller = plan.height - one_line.plan("Nguyễn Văn An", None, MOMENT).height  # type: ignore[union-attr]
    assert taller > 10, "the second title line takes its own room"
    # Without a profile title, the certificate's.
    untitled = KindAppearance(kind="person", signature=signature_image())
    plan = untitled.plan("Nguyễn Văn An", None, MOMENT, cert_title="Phó Giám đốc")
    assert plan is not None and [line.text for line in plan.style.top] == ["Phó Giám đốc"]


LONG_UNIT = (
    "Trung tâm Phục vụ hành chính công tỉnh Demo A thuộc Văn phòng Ủy ban nhân dân tỉnh Demo A "
    "chi nhánh số 2"
)


@needs_poppler
def test_a_long_copying_agency_wraps_in_the_right_half(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    """A 100-character `unit` made one line about 400 pt wide reaching into the left half of
    the page; it wraps within the right half, every word kept."""
    copy = KindAppearance(kind="copy", copy_kind="SAO Y", unit=LONG_UNIT)
    plan = copy.plan("Sở Tư pháp", None, MOMENT)
    assert plan is not None and plan.width <= 595.0 / 2 - 24.0 + 1
    texts = [line.text for line in plan.style.top]
    assert len(texts) >= 4 and texts[0] == "SAO Y"
    assert " ".join(texts[1:-1]) == LONG_UNIT
    signed = sign(nd30_page(), key, copy)
    (signature,) = PdfFileReader(io.BytesIO(signed)).embedded_signatures
    x1, _, x2, _ = (float(v) for v in signature.sig_field["/Rect"])
    assert x1 >= 595.0 / 2 - 1 and x2 - x1 <= plan.width + 1, (x1, x2)
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=signed, capture_output=True, check=True
    ).stdout.decode()
    assert "chi nhánh số 2" in " ".join(text.split())


# (kind, settings, the top margin in mm at which the block gets the 90 % fallback box: the
# two-line digitised block still fits at full size under 2 cm, and goes below the motto
# under 16 mm).
_TEXT_BLOCKS = [
    ("copy", {"copy_kind": "SAO Y", "unit": "Sở Tư pháp tỉnh Demo A"}, 20.0),
    ("annex", {"document_number": "123/QĐ-STP", "unit": "Sở Tư pháp"}, 20.0),
    ("digitised", {"unit": "Trung tâm Phục vụ hành chính công"}, 16.0),
]


@needs_poppler
@pytest.mark.parametrize(("kind", "settings", "fallback_mm"), _TEXT_BLOCKS)
def test_text_block_fits_its_widget_at_full_and_fallback_size(
    tmp_path: Path, key, kind, settings, fallback_mm
) -> None:  # type: ignore[no-untyped-def]
    """New user 14 F3: on a page whose text starts 2 cm from the top, the block gets the
    90 % top-margin fallback box; its 10 pt text stayed 10 pt and the time line ran past the
    widget's edge ("…+07:0" printed). Every word poppler finds in the block, the whole time
    included, lies inside the widget, at full size and at the fallback size."""
    from tests.support import nd30

    appearance = KindAppearance(kind=kind, **settings)
    plan = appearance.plan(_cn(key), None, MOMENT)
    assert plan is not None
    sizes = {}
    for top_mm in (30.0, fallback_mm):
        page, _ = nd30.decision(None, top_mm=top_mm)
        signed = sign(page, key, appearance)
        (signature,) = PdfFileReader(io.BytesIO(signed)).embedded_signatures
        x1, y1, x2, y2 = (float(v) for v in signature.sig_field["/Rect"])
        scale = round((x2 - x1) / plan.width, 2)
        sizes[top_mm] = scale
        assert abs((y2 - y1) / plan.height - scale) < 0.02, (x1, y1, x2, y2, plan)
        before = set(_word_boxes(page, tmp_path))
        # poppler's boxes, y down from the top of the page; the widget's, y up. The stamp's
        # words: those of the signed page that were not on the page, wherever they fall.
        top, bottom = A4[1] - y2, A4[1] - y1
        added = [w for w in _word_boxes(signed, tmp_path) if w not in before]
        time_words = [w for w in added if "2026-11-27T14:05:09+07:00" in w[0]]
        assert time_words, (top_mm, added)
        for word, wx1, wy1, wx2, wy2 in added:
            assert x1 - 0.5 <= wx1 and wx2 <= x2 + 0.5, (top_mm, scale, word, (x1, x2), (wx1, wx2))
            assert top - 0.5 <= wy1 and wy2 <= bottom + 0.5, (top_mm, word, (top, bottom))
    assert sizes == {30.0: 1.0, fallback_mm: 0.9}, sizes


# --- The stamp's constant objects, written from bytes prepared once ---------------------------


def _written(obj) -> bytes:  # type: ignore[no-untyped-def]
    out = io.BytesIO()
    obj.write_to_stream(out)
    return out.getvalue()


def test_serialised_stamp_objects_are_pyhankos_bytes() -> None:
    """The font's and an image's objects written from their templates (appearance._Serialised)
    are, byte for byte, what pyHanko writes for the same objects built as dictionaries (the
    path encrypted documents take), with this document's references in place."""
    from pyhanko.pdf_utils import generic

    from signing_service.signing import appearance as a

    program = a._font_program(a.kinds_font())
    refs: dict[str, generic.PdfObject] = {
        key: generic.IndirectObject(40 + i, 0, None) for i, key in enumerate(a._FONT_ORDER)
    }
    refs["widths"] = a._UsedWidths(program.widths, {3, 4, 5, 9})
    templates = a._font_templates(a.kinds_font())
    for key in a._FONT_ORDER:
        obj, data = a._font_object(program, key, refs.__getitem__)
        slow = generic.StreamObject(dict(obj), encoded_data=data) if data is not None else obj
        template, referred = templates[key]
        fast = a._Serialised(template, tuple(refs[r] for r in referred), data)
        assert _written(fast) == _written(slow), key
    smask_ref = generic.IndirectObject(77, 0, None)
    for image in (signature_image(), seal_image()):
        smask_dict, rgb_dict = a._image_dicts(image.width_px, image.height_px, lambda _k: smask_ref)
        sizes = (image.width_px, image.height_px, len(image.rgb_flate), len(image.alpha_flate))
        (smask_t, _), (rgb_t, referred) = a._image_templates(*sizes)
        assert referred == ("smask",)
        assert _written(a._Serialised(smask_t, (), image.alpha_flate)) == _written(
            generic.StreamObject(dict(smask_dict), encoded_data=image.alpha_flate)
        )
        assert _written(a._Serialised(rgb_t, (smask_ref,), image.rgb_flate)) == _written(
            generic.StreamObject(dict(rgb_dict), encoded_data=image.rgb_flate)
        )
    # The templates keep no image's samples: numbers only.
    assert all(len(part) < 400 for part in rgb_t if isinstance(part, bytes))


def test_a_template_refuses_what_it_cannot_mark() -> None:
    """A NUL byte in a dictionary's bytes would be taken for a reference marker: refused."""
    from pyhanko.pdf_utils import generic

    from signing_service.signing import appearance as a

    class Raw(generic.PdfObject):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def write_to_stream(self, stream, handler=None, container_ref=None):  # type: ignore[no-untyped-def]
            stream.write(self.data)

    for raw in (b"\x00", b"\x001\x00", b"\x00x\x00"):
        with pytest.raises(ValueError):
            a._template(generic.DictionaryObject({generic.NameObject("/X"): Raw(raw)}))
    # Slots in order are what a template is made of.
    template = a._template(
        generic.DictionaryObject(
            {generic.NameObject("/A"): a._Slot(0), generic.NameObject("/B"): a._Slot(1)}
        )
    )
    assert template == (b"<<\n/A ", 0, b"\n/B ", 1, b"\n>>")


@needs_poppler
def test_person_and_seal_on_an_encrypted_document(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    """An encrypted document (owner password only) takes the ordinary objects, which the
    writer encrypts: the stamp's font and images still render, blue and red; the seal goes
    on the person-signed document as a second signature (its field found through pyHanko's
    decrypting proxies, signing/inputs.py)."""
    source = pikepdf.open(io.BytesIO(nd30_page()))
    out = io.BytesIO()
    source.save(out, encryption=pikepdf.Encryption(user="", owner="chu-so-huu"))
    encrypted = out.getvalue()
    person = KindAppearance(kind="person", title="GIÁM ĐỐC", signature=signature_image())
    signed = sign(encrypted, key, person)
    assert len(pixels(render(signed, tmp_path), is_blue)) > 300
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=signed, capture_output=True, check=True
    ).stdout.decode()
    assert "GIÁM ĐỐC" in text
    sealed = sign(signed, key, KindAppearance(kind="seal", seal=seal_image()))
    assert len(pixels(render(sealed, tmp_path, name="seal"), is_red)) > 300
    for document, count in ((signed, 1), (sealed, 2)):
        reader = PdfFileReader(io.BytesIO(document))
        reader.decrypt("")
        assert len(reader.embedded_signatures) == count
    # The seal went over the person signature, as on a plain document.
    person_rect, seal_rect = (
        [float(v) for v in s.sig_field["/Rect"]] for s in reader.embedded_signatures
    )
    assert seal_rect[0] < person_rect[2] and person_rect[0] < seal_rect[2]
    assert seal_rect[1] < person_rect[3] and person_rect[1] < seal_rect[3]


def _shown_and_listed(document: bytes) -> tuple[set[int], dict[int, int]]:
    """(glyph ids the stamp's text operators show, {glyph id: width} of its font's /W)."""
    import re

    shown: set[int] = set()
    listed: dict[int, int] = {}
    with pikepdf.open(io.BytesIO(document)) as pdf:
        for obj in pdf.objects:
            if isinstance(obj, pikepdf.Dictionary) and obj.get("/Subtype") == "/CIDFontType2":
                items = list(obj.W)
                for first, widths in zip(items[::2], items[1::2], strict=True):
                    for offset, width in enumerate(widths):
                        listed[int(first) + offset] = int(width)
            if isinstance(obj, pikepdf.Stream) and obj.get("/Subtype") == "/Form":
                data = obj.read_bytes()
                for hexed in re.findall(rb"<([0-9A-F]+)> Tj", data):
                    shown.update(int(hexed[i : i + 4], 16) for i in range(0, len(hexed), 4))
    return shown, listed


def test_the_stamp_font_lists_the_widths_of_the_glyphs_shown(key) -> None:  # type: ignore[no-untyped-def]
    """The stamp font's /W holds the widths of the glyphs the stamp shows, as the font
    program has them (ISO 32000-1 §9.7.4.3; PDF/A-1 §6.3.6 asks them to agree), and no
    others: a later reader (the active-content scan of the next signature, a verifier) does
    not walk the whole font's ~1,000 widths. The same on an encrypted document."""
    from signing_service.signing import appearance as a

    program = a._font_program(a.kinds_font())
    person = KindAppearance(kind="person", title="GIÁM ĐỐC", signature=signature_image())
    source = pikepdf.open(io.BytesIO(nd30_page()))
    out = io.BytesIO()
    source.save(out, encryption=pikepdf.Encryption(user="", owner="chu-so-huu"))
    for document in (nd30_page(), out.getvalue()):
        shown, listed = _shown_and_listed(sign(document, key, person))
        assert len(shown) > 10  # the title, the name and the time
        assert set(listed) == shown
        assert all(listed[g] == program.widths[g] for g in shown)
