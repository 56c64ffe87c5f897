"""A4 pages laid out as Nghị định 30/2020 prescribes, in Vietnamese with its marks: Liberation
Serif embedded as a Type0/Identity-H font with a ToUnicode map, so that PDFium and poppler
read the text back (the layout follows the new-user review's generator, issue 10).

Shapes: coordinates in points, user space, origin bottom left; A4 is 595 × 842.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pikepdf
from fontTools.ttLib import TTFont

FONT = Path("/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf")
A4 = (595.0, 842.0)
MM = 72 / 25.4


@lru_cache(maxsize=1)
def _font() -> TTFont:
    return TTFont(str(FONT))


def text_width(text: str, size: float) -> float:
    font = _font()
    cmap, hmtx = font.getBestCmap(), font["hmtx"]
    return sum(hmtx[cmap.get(ord(c), ".notdef")][0] for c in text) * size / font["head"].unitsPerEm


def _encode(text: str) -> str:
    font = _font()
    cmap = font.getBestCmap()
    return "".join(f"{font.getGlyphID(cmap.get(ord(c), '.notdef')):04X}" for c in text)


def _font_object(pdf: pikepdf.Pdf) -> pikepdf.Object:
    font = _font()
    upem, hmtx = font["head"].unitsPerEm, font["hmtx"]
    data = FONT.read_bytes()
    program = pdf.make_stream(data)
    program.Length1 = len(data)
    name = pikepdf.Name("/LiberationSerif")
    head = font["head"]
    descriptor = pikepdf.Dictionary(
        Type=pikepdf.Name.FontDescriptor,
        FontName=name,
        Flags=34,
        # Glyph space is thousandths of an em (ISO 32000-1 §9.8.1), not font units.
        FontBBox=[int(v * 1000 / upem) for v in (head.xMin, head.yMin, head.xMax, head.yMax)],
        ItalicAngle=0,
        Ascent=int(font["hhea"].ascent * 1000 / upem),
        Descent=int(font["hhea"].descent * 1000 / upem),
        CapHeight=662,
        StemV=80,
        FontFile2=program,
    )
    widths = [int(hmtx[g][0] * 1000 / upem) for g in font.getGlyphOrder()]
    cid = pikepdf.Dictionary(
        Type=pikepdf.Name.Font,
        Subtype=pikepdf.Name.CIDFontType2,
        BaseFont=name,
        CIDSystemInfo=pikepdf.Dictionary(
            Registry=pikepdf.String("Adobe"), Ordering=pikepdf.String("Identity"), Supplement=0
        ),
        FontDescriptor=descriptor,
        W=[0, widths],
        CIDToGIDMap=pikepdf.Name.Identity,
    )
    reverse: dict[int, int] = {}
    for code, glyph in font.getBestCmap().items():
        if code < 0x10000:
            reverse.setdefault(font.getGlyphID(glyph), code)
    items = sorted(reverse.items())
    cmap = [
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CIDSystemInfo << "
        "/Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def /CMapName /Adobe-Identity-UCS "
        "def /CMapType 2 def 1 begincodespacerange <0000> <FFFF> endcodespacerange"
    ]
    for i in range(0, len(items), 100):
        chunk = items[i : i + 100]
        cmap += [
            f"{len(chunk)} beginbfchar",
            *(f"<{g:04X}> <{u:04X}>" for g, u in chunk),
            "endbfchar",
        ]
    cmap.append("endcmap CMapName currentdict /CMap defineresource pop end end")
    return pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font,
            Subtype=pikepdf.Name.Type0,
            BaseFont=name,
            Encoding=pikepdf.Name("/Identity-H"),
            DescendantFonts=[pdf.make_indirect(cid)],
            ToUnicode=pdf.make_stream("\n".join(cmap).encode()),
        )
    )


@dataclass
class Page:
    """Text lines ``(size, x, baseline y, text, align)``; ``align`` "l", "c" (x is the centre)
    or "r"."""

    lines: list[tuple[float, float, float, str, str]] = field(default_factory=list)
    rotate: int = 0

    def text(self, size: float, x: float, y: float, text: str, align: str = "l") -> None:
        self.lines.append((size, x, y, text, align))

    def content(self) -> bytes:
        ops = []
        for size, x, y, text, align in self.lines:
            w = text_width(text, size)
            x0 = x - w / 2 if align == "c" else x - w if align == "r" else x
            ops.append(f"BT /F1 {size:g} Tf {x0:.2f} {y:.2f} Td <{_encode(text)}> Tj ET")
        return "\n".join(ops).encode()


def build(pages: list[Page]) -> bytes:
    """The PDF of ``pages`` (A4, one embedded font)."""
    pdf = pikepdf.new()
    font = _font_object(pdf)
    for spec in pages:
        page = pdf.add_blank_page(page_size=A4)
        page.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
        page.Contents = pdf.make_stream(spec.content())
        if spec.rotate:
            page.Rotate = spec.rotate
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


LEFT, RIGHT = 30 * MM, A4[0] - 15 * MM
LEFT_COLUMN, RIGHT_COLUMN = 160.0, 390.0
BODY = (
    "Điều 1. Phê duyệt kế hoạch cải cách hành chính năm 2027 của Sở Tư pháp tỉnh Demo A kèm "
    "theo Quyết định này, gồm các nhiệm vụ về thủ tục hành chính và số hóa hồ sơ."
)


def header(page: Page, top_mm: float = 20.0) -> float:
    """The agency block (left) and the national motto (right), ``top_mm`` from the top edge;
    the place and date under the motto. Returns the baseline below which the title goes."""
    y = A4[1] - top_mm * MM - 10
    page.text(12, LEFT_COLUMN, y, "UBND TỈNH DEMO A", "c")
    page.text(12, RIGHT_COLUMN, y, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "c")
    y -= 15
    page.text(12, LEFT_COLUMN, y, "SỞ TƯ PHÁP", "c")
    page.text(13, RIGHT_COLUMN, y, "Độc lập - Tự do - Hạnh phúc", "c")
    y -= 28
    page.text(13, LEFT_COLUMN, y, "Số: 123/QĐ-STP", "c")
    page.text(13, RIGHT_COLUMN, y, "Demo A, ngày 27 tháng 11 năm 2026", "c")
    return y - 40


def decision(
    signer: str | None,
    titles: tuple[str, ...] = ("GIÁM ĐỐC",),
    gap_pt: float = 85.0,
    top_mm: float = 20.0,
    body_lines: int = 12,
) -> tuple[bytes, float]:
    """A one-page decision: header, title, ``body_lines`` full-width lines, "Nơi nhận:" on the
    left and, with ``signer``, the signer block on the right: ``titles`` (one line each), a
    space of ``gap_pt`` between the last title's baseline and the name's baseline, the name.
    Returns the PDF and the name line's baseline (points from the bottom)."""
    page = Page()
    y = header(page, top_mm)
    page.text(14, A4[0] / 2, y, "QUYẾT ĐỊNH", "c")
    y -= 30
    for _ in range(body_lines):
        text = BODY[:100]
        while text_width(text, 13) > RIGHT - LEFT:
            text = text[:-1]
        page.text(13, LEFT, y, text)
        y -= 18
    y -= 14
    page.text(12, LEFT, y, "Nơi nhận:")
    page.text(11, LEFT, y - 14, "- Như Điều 3;")
    page.text(11, LEFT, y - 28, "- Lưu: VT, VP.")
    name_y = y
    if signer is not None:
        for title in titles:
            page.text(13, RIGHT_COLUMN + 40, y, title, "c")
            y -= 16
        name_y = y + 16 - gap_pt
        page.text(13, RIGHT_COLUMN + 40, name_y, signer, "c")
    return build([page]), name_y


def short_note(rotate: int = 0) -> bytes:
    """A short document with no full-width body line: the header and three short lines."""
    page = Page(rotate=rotate)
    y = header(page, 20.0)
    for text in ("THÔNG BÁO", "Lịch tiếp công dân tháng 12.", "Văn phòng Sở."):
        page.text(13, A4[0] / 2, y, text, "c")
        y -= 20
    return build([page])
