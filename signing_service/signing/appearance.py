"""Visible signature appearance in the style of Vietnamese state documents.

Nghị định 30/2020, Appendix I: signatures on electronic copies and attachments carry no image
but a text block at the top right of page 1 (agency, signing time as ISO 8601 in Vietnam time),
Times New Roman 10 pt, black. Liberation Serif is metric-compatible and freely licensed.
pyHanko's default stamp font has no Vietnamese glyphs, so a TrueType font is always embedded.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import tempfile
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from fontTools import subset
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.content import ResourceType
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.layout import BoxConstraints
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.stamp import TextStampStyle
from pyhanko.stamp.base import BaseStamp, BaseStampStyle

from signing_service.signing import prefix_digest
from signing_service.signing.pdfa import PdfAGlyphAccumulatorFactory
from signing_service.signing.repertoire import STAMP_RANGES
from signing_service.signing.stamp_images import StampImage
from signing_service.timefmt import vietnam_time

VIETNAM_TZ = timezone(timedelta(hours=7), "ICT")

FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/noto/NotoSerif-Regular.ttf"),
    Path("/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf"),
)


class FontMissing(Exception):
    pass


# Latin, Vietnamese (Latin Extended Additional), combining marks, punctuation, ₫: the ranges
# profiles are checked against (signing/repertoire.py), so a saved text is drawable.
STAMP_UNICODES = [code for start, end in STAMP_RANGES for code in range(start, end)]


def _subset_font(source: Path) -> Path:
    """A Latin + Vietnamese subset of ``source``, made once and cached on disk.

    pyHanko subsets the embedded font on every signature; on a full Noto Serif that is ~130 ms
    (most of a signature's cost). On this ~50 KB subset it is a few milliseconds. The subset
    has 1000 units per em, the unit of the PDF's glyph widths.
    """
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "signing-service-fonts"
    target = cache / f"{source.stem}-vi-u1000-{digest}.ttf"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    options = subset.Options()
    # Vietnamese text arrives precomposed (NFC) and the font has precomposed glyphs, so no
    # shaping tables are needed; dropping them and the hinting makes the subset small.
    options.layout_features = []
    options.hinting = False
    options.name_IDs = ["*"]
    options.notdef_outline = True
    font = subset.load_font(str(source), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=STAMP_UNICODES)
    subsetter.subset(font)
    if font["head"].unitsPerEm != 1000:
        # pyHanko (0.38) writes the glyph widths of the /W array in font units, which PDF reads
        # as thousandths of an em: a 2048-unit font (Liberation Serif) was drawn letter-spaced.
        from fontTools.ttLib.scaleUpem import scale_upem

        scale_upem(font, 1000)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".ttf")
    os.close(fd)
    subset.save_font(font, tmp, options)
    os.replace(tmp, target)
    return target


@lru_cache(maxsize=1)
def default_font() -> Path:
    for path in FONT_CANDIDATES:
        if path.exists():
            return _subset_font(path)
    raise FontMissing("no Vietnamese-capable TrueType font found (install fonts-noto-core)")


@dataclass(frozen=True)
class AppearanceSpec:
    """Where and what to draw. ``None`` in a profile means an invisible signature."""

    heading: str = "Ký bởi"
    width: float = 220.0
    height: float = 52.0
    margin: float = 24.0
    font_size: int = 9
    # Placement (signing/placement.py): a prepared signature field to fill, and what to do
    # when no free space fits the stamp.
    field_name: str | None = None
    when_full: Literal["shrink", "next-page", "refuse"] = "shrink"

    def stamp(self, signer_name: str, organisation: str | None, moment: datetime) -> TextStampStyle:
        lines = [f"{self.heading}: {signer_name}"]
        if organisation and organisation != signer_name:
            lines.append(f"Cơ quan: {organisation}")
        # People's time, as the page and the report print it (new user 11 item 25): the
        # machine-readable time is the signature's own /M and signing-time attribute.
        lines.append(f"Thời gian ký: {readable_time(moment)}")
        return TextStampStyle(
            # NFC: the subset font has precomposed Vietnamese glyphs and no shaping tables.
            stamp_text=unicodedata.normalize("NFC", "\n".join(lines)),
            text_box_style=TextBoxStyle(
                font=PdfAGlyphAccumulatorFactory(str(default_font())),  # /CIDSet: pdfa.py
                font_size=self.font_size,
            ),
            border_width=0,
            background=None,
        )


# --- Appearance kinds (issue 10; Nghị định 30/2020, Appendix I) ----------------------------
#
# WHAT a stamp shows, independent of WHERE it goes: :func:`plan_stamp` gives, for a kind, its
# texts and images, the size the stamp asks for, the region it belongs in and the pyHanko stamp
# style that draws it in whatever box it is given. Placement (signing/placement.py) chooses
# the box from the plan's size, region and ``over_signature``.

KINDS = ("person", "seal", "copy", "annex", "digitised", "none")
COPY_KINDS = ("SAO Y", "SAO LỤC", "TRÍCH SAO")
Region = Literal["top-right", "signature-block"]

LIBERATION_SERIF = Path("/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf")
# Vertical room per line, in em. Liberation Serif's stacked Vietnamese capitals ("Ể", "Ấ",
# "Ỗ") reach 0.89 em above the baseline and its descenders 0.22 em below: 1.3 em per line
# leaves a gap between a line's descenders and the next line's stacked marks.
ASCENT_EM = 0.92
DESCENT_EM = 0.24
LINE_EM = 1.3
PAD = 3.0  # points between the box edge and its content
# A person stamp: the signature image is shown at most this tall, and at least this wide a box.
MAX_SIGNATURE_HEIGHT_PT = 56.0
MIN_PERSON_WIDTH_PT = 160.0
# In a signer block the page already prints: the image is shrunk to the space between the
# title and the name down to this height (12 mm; smaller, a signature is no longer legible
# on paper, and the full stamp goes to the signature block instead).
MIN_GAP_SIGNATURE_HEIGHT_PT = 12 * 72 / 25.4
# A text block (copy, annex, digitised) stays in the right half of the page (Appendix I): its
# lines wrap at half an A4 page's width (595 pt) less the default 24 pt margin.
MAX_BLOCK_WIDTH_PT = 595.0 / 2 - 24.0
# The colours the texts are drawn in: black (Appendix I: "màu đen").
BLACK = b"0 0 0 rg"


@lru_cache(maxsize=1)
def kinds_font() -> Path:
    """Liberation Serif (metric-compatible with Times New Roman, Appendix I), subset to the
    stamp repertoire; :func:`default_font` when it is not installed (Debian fonts-liberation2)."""
    if LIBERATION_SERIF.exists():
        return _subset_font(LIBERATION_SERIF)
    return default_font()


@lru_cache(maxsize=4)
def _advances(font: Path) -> tuple[dict[int, int], int]:
    """Code point → advance width (font units), and units per em: to measure a line before a
    box exists. The subset has no layout tables, so advances are what the PDF shows."""
    from fontTools.ttLib import TTFont

    tt = TTFont(str(font), lazy=True)
    cmap = tt.getBestCmap()
    hmtx = tt["hmtx"]
    return {code: hmtx[name][0] for code, name in cmap.items()}, tt["head"].unitsPerEm


def text_width(text: str, size: float, font: Path | None = None) -> float:
    """Width in points of ``text`` (NFC) at ``size`` points in the stamp font."""
    advances, upem = _advances(font or kinds_font())
    return sum(advances.get(ord(c), upem // 2) for c in text) * size / upem


def wrap_text(text: str, size: float, max_width: float, font: Path | None = None) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``max_width`` points at ``size`` pt
    (measured with :func:`text_width`, greedy: as many words per line as fit). A word wider
    than ``max_width`` keeps a line of its own rather than being cut."""
    lines: list[str] = []
    for word in text.split():
        if lines and text_width(f"{lines[-1]} {word}", size, font) <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [text]


def readable_time(moment: datetime) -> str:
    """``14:05:09 ngày 27/11/2026 (+07:00)``: the signing time as people read it (Vietnam time);
    the copy block keeps ISO 8601 (:func:`vietnam_time`), as the rules ask."""
    local = moment.astimezone(VIETNAM_TZ)
    return f"{local:%H:%M:%S} ngày {local:%d/%m/%Y} (+07:00)"


@dataclass(frozen=True)
class StampTexts:
    """What the texts of a stamp say. ``title``: the officer's title line ("GIÁM ĐỐC"; a
    newline separates two lines);
    ``unit``: the agency (copying agency, digitising unit); ``copy_kind``: one of
    :data:`COPY_KINDS`; ``document_number``: the main document's number and symbol
    (``123/QĐ-STP``) on an annex."""

    signer_name: str
    moment: datetime
    title: str | None = None
    unit: str | None = None
    copy_kind: str | None = None
    document_number: str | None = None


@dataclass(frozen=True)
class _Line:
    text: str
    size: float

    @property
    def height(self) -> float:
        return self.size * LINE_EM


@dataclass(frozen=True)
class _Image:
    image: StampImage
    max_width: float  # points
    max_height: float


@dataclass(frozen=True)
class _FontProgram:
    """A stamp font prepared once per process: everything a PDF needs to show it, compressed.

    Why not pyHanko's GlyphAccumulator: it subsets and re-serialises the font with fontTools on
    every signature (~25 ms of a 4 ms invisible signature; ``make bench``, "visible
    person+seal ÷ invisible", target ≤ 1.3). The stamp font is already a ~55 KB subset of the
    stamp repertoire (:func:`_subset_font`), so it is embedded whole (~30 KB compressed), and
    its /W array, ToUnicode CMap and /CIDSet (PDF/A-1, ISO 19005-1 §6.3.5) are built here once.
    """

    name: str  # subset tag + PostScript name
    cmap: dict[int, int]  # code point → glyph id (= CID, /CIDToGIDMap /Identity)
    widths: tuple[int, ...]  # per glyph id, thousandths of an em (the subset has 1000 upem)
    bbox: tuple[int, int, int, int]
    ascent: int
    descent: int
    cap_height: int
    font_flate: bytes
    font_length: int
    to_unicode_flate: bytes
    cid_set_flate: bytes


@lru_cache(maxsize=4)
def _font_program(font: Path) -> _FontProgram:
    import zlib

    from fontTools.ttLib import TTFont

    data = font.read_bytes()
    tt = TTFont(io.BytesIO(data))
    if tt["head"].unitsPerEm != 1000:
        raise FontMissing(f"{font} is not at 1000 units per em")
    order = tt.getGlyphOrder()
    hmtx = tt["hmtx"]
    widths = tuple(hmtx[name][0] for name in order)
    gid = {name: i for i, name in enumerate(order)}
    cmap = {code: gid[name] for code, name in tt.getBestCmap().items()}
    first: dict[int, int] = {}
    for code in sorted(cmap):
        first.setdefault(cmap[code], code)
    entries = [
        b"<%04X> <%s>" % (g, chr(c).encode("utf-16-be").hex().upper().encode())
        for g, c in sorted(first.items())
    ]
    blocks = [
        b"%d beginbfchar\n%s\nendbfchar" % (len(chunk), b"\n".join(chunk))
        for chunk in (entries[i : i + 100] for i in range(0, len(entries), 100))
    ]
    to_unicode = b"\n".join(
        [
            b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap",
            b"/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
            b"/CMapName /Adobe-Identity-UCS def /CMapType 2 def",
            b"1 begincodespacerange <0000> <FFFF> endcodespacerange",
            *blocks,
            b"endcmap CMapName currentdict /CMap defineresource pop end end",
        ]
    )
    cid_set = bytearray((len(order) + 7) // 8)
    for g in range(len(order)):
        cid_set[g // 8] |= 0x80 >> (g % 8)
    head, os2 = tt["head"], tt["OS/2"]
    tag = "".join(chr(65 + b % 26) for b in hashlib.sha256(data).digest()[:6])
    ps_name = tt["name"].getDebugName(6) or font.stem
    return _FontProgram(
        name=f"{tag}+{ps_name}",
        cmap=cmap,
        widths=widths,
        bbox=(head.xMin, head.yMin, head.xMax, head.yMax),
        ascent=tt["hhea"].ascent,
        descent=tt["hhea"].descent,
        cap_height=getattr(os2, "sCapHeight", 700) or 700,
        font_flate=zlib.compress(data, 9),
        font_length=len(data),
        to_unicode_flate=zlib.compress(to_unicode, 9),
        cid_set_flate=zlib.compress(bytes(cid_set), 9),
    )


class _UsedWidths(generic.PdfObject):
    """The /W array of the stamp font in one document: the widths of the glyphs its stamp
    shows (ISO 32000-1 §9.7.4.3, ``[first [w …] first [w …]]`` per run of consecutive glyph
    ids), read from ``used`` when the document is written, after the stamp was drawn. A glyph
    not listed takes /DW, and none is shown; PDF/A asks widths to agree with the font program
    for the glyphs used (ISO 19005-1 §6.3.6), which these are.

    Why not the whole font's ~1,000 widths (as before): every later reader parses them, and
    the active-content scan of each later signature (verification/active.py) walked them one
    by one: ~1.7 ms of the seal that follows a person signature (``python -m bench.run
    --appearance-only``)."""

    def __init__(self, widths: tuple[int, ...], used: set[int]) -> None:
        self.widths = widths
        self.used = used

    def write_to_stream(self, stream: Any, handler: Any = None, container_ref: Any = None) -> None:
        runs: list[list[int]] = []
        for gid in sorted(self.used):
            if runs and runs[-1][0] + len(runs[-1]) - 1 == gid - 1:
                runs[-1].append(gid)
            else:
                runs.append([gid])
        stream.write(
            b"["
            + b" ".join(
                b"%d [%s]" % (run[0], b" ".join(b"%d" % self.widths[g] for g in run))
                for run in runs
            )
            + b"]"
        )


class _Slot(generic.PdfObject):
    """Where a reference goes in a :func:`_template`: written as a marker."""

    def __init__(self, index: int) -> None:
        self.index = index

    def write_to_stream(self, stream: Any, handler: Any = None, container_ref: Any = None) -> None:
        stream.write(b"\x00%d\x00" % self.index)


Template = tuple[bytes | int, ...]


def _template(obj: generic.DictionaryObject, length: int | None = None) -> Template:
    """``obj`` (a dictionary of names, numbers, ASCII strings and :class:`_Slot` references)
    serialised by pyHanko once: its bytes, with the slot index where each reference goes.
    With ``length``: the dictionary of a stream of that many (encoded) bytes, as
    ``StreamObject`` writes it (``/Length`` last); :class:`_Serialised` adds the data."""
    buffer = io.BytesIO()
    if length is not None:
        obj = generic.DictionaryObject(obj)
        obj[pdf_name("/Length")] = generic.NumberObject(length)
    obj.write_to_stream(buffer)
    parts = buffer.getvalue().split(b"\x00")
    # pyHanko escapes NUL in names and strings; a stray one would shift the slots: refused.
    slots = parts[1::2]
    if len(parts) % 2 != 1 or slots != [b"%d" % i for i in range(len(slots))]:
        raise ValueError("a NUL byte in a stamp dictionary")
    return tuple(p if i % 2 == 0 else int(p) for i, p in enumerate(parts))


class _Serialised(generic.PdfObject):
    """An object of the stamp written from its :func:`_template`, the references of this
    document and, for a stream, its data. Why: the stamp font's six objects and an image's two
    depend only on the font program or the image; building them as pyHanko dictionaries and
    serialising those, name by name, on every visible signature cost ~0.1 ms of the person
    stamp (``python -m bench.run --appearance-only``). Only in documents without encryption (a
    security handler encrypts strings and streams per object): :class:`_StampFont` and
    :meth:`KindStamp._image_ref` build ordinary objects there. The bytes are pyHanko's own
    (tests/test_appearance_kinds.py compares them)."""

    def __init__(
        self,
        template: Template,
        refs: tuple[generic.PdfObject, ...],
        data: bytes | None = None,
    ) -> None:
        self.template = template
        self.refs = refs
        self.data = data

    def write_to_stream(self, stream: Any, handler: Any = None, container_ref: Any = None) -> None:
        if handler is not None:  # never added to an encrypted document's writer
            raise generic.PdfWriteError("a serialised stamp object in an encrypted document")
        for part in self.template:
            if isinstance(part, int):
                self.refs[part].write_to_stream(stream)
            else:
                stream.write(part)
        if self.data is not None:
            stream.write(b"\nstream\n")
            stream.write(self.data)
            stream.write(b"\nendstream")


def _font_object(
    p: _FontProgram, key: str, ref: Callable[[str], generic.PdfObject]
) -> tuple[generic.DictionaryObject, bytes | None]:
    """One object of the stamp font (ISO 32000-1 §9.7: a Type0 font over a CIDFontType2,
    Identity-H; ``key`` one of :data:`_FONT_ORDER`) and its stream data (``None``: not a
    stream). ``ref(key)``: the reference to another of them (an indirect object, or a
    :class:`_Slot` in a template); ``ref("widths")``: the /W array (:class:`_UsedWidths`)."""
    flate = pdf_name("/FlateDecode")
    name = pdf_name("/" + p.name)
    if key == "font_file":
        return (
            generic.DictionaryObject(
                {
                    pdf_name("/Length1"): generic.NumberObject(p.font_length),
                    pdf_name("/Filter"): flate,
                }
            ),
            p.font_flate,
        )
    if key in ("cid_set", "to_unicode"):
        data = p.cid_set_flate if key == "cid_set" else p.to_unicode_flate
        return generic.DictionaryObject({pdf_name("/Filter"): flate}), data
    if key == "descriptor":
        return (
            generic.DictionaryObject(
                {
                    pdf_name("/Type"): pdf_name("/FontDescriptor"),
                    pdf_name("/FontName"): name,
                    pdf_name("/Flags"): generic.NumberObject(6),  # serif, symbolic (CID font)
                    pdf_name("/FontBBox"): generic.ArrayObject(
                        generic.NumberObject(v) for v in p.bbox
                    ),
                    pdf_name("/ItalicAngle"): generic.NumberObject(0),
                    pdf_name("/Ascent"): generic.NumberObject(p.ascent),
                    pdf_name("/Descent"): generic.NumberObject(p.descent),
                    pdf_name("/CapHeight"): generic.NumberObject(p.cap_height),
                    pdf_name("/StemV"): generic.NumberObject(80),
                    pdf_name("/FontFile2"): ref("font_file"),
                    pdf_name("/CIDSet"): ref("cid_set"),
                }
            ),
            None,
        )
    if key == "cid_font":
        return (
            generic.DictionaryObject(
                {
                    pdf_name("/Type"): pdf_name("/Font"),
                    pdf_name("/Subtype"): pdf_name("/CIDFontType2"),
                    pdf_name("/BaseFont"): name,
                    pdf_name("/CIDSystemInfo"): generic.DictionaryObject(
                        {
                            pdf_name("/Registry"): generic.TextStringObject("Adobe"),
                            pdf_name("/Ordering"): generic.TextStringObject("Identity"),
                            pdf_name("/Supplement"): generic.NumberObject(0),
                        }
                    ),
                    pdf_name("/FontDescriptor"): ref("descriptor"),
                    pdf_name("/W"): ref("widths"),
                    pdf_name("/CIDToGIDMap"): pdf_name("/Identity"),
                }
            ),
            None,
        )
    assert key == "font"
    return (
        generic.DictionaryObject(
            {
                pdf_name("/Type"): pdf_name("/Font"),
                pdf_name("/Subtype"): pdf_name("/Type0"),
                pdf_name("/BaseFont"): name,
                pdf_name("/Encoding"): pdf_name("/Identity-H"),
                pdf_name("/DescendantFonts"): generic.ArrayObject([ref("cid_font")]),
                pdf_name("/ToUnicode"): ref("to_unicode"),
            }
        ),
        None,
    )


# The order the font's objects are added in (each after those it refers to).
_FONT_ORDER = ("font_file", "cid_set", "to_unicode", "descriptor", "cid_font", "font")
# The stream data of each (None: not a stream).
_FONT_DATA: dict[str, Callable[[_FontProgram], bytes | None]] = {
    "font_file": lambda p: p.font_flate,
    "cid_set": lambda p: p.cid_set_flate,
    "to_unicode": lambda p: p.to_unicode_flate,
    "descriptor": lambda p: None,
    "cid_font": lambda p: None,
    "font": lambda p: None,
}


def _templated(
    build: Callable[[Callable[[str], generic.PdfObject]], generic.DictionaryObject],
    length: int | None = None,
) -> tuple[Template, tuple[str, ...]]:
    """The :func:`_template` (``length``: of a stream's dictionary) of the dictionary
    ``build(ref)`` makes, and the keys its slots refer to, in slot order."""
    referred: list[str] = []

    def slot(key: str) -> _Slot:
        referred.append(key)
        return _Slot(len(referred) - 1)

    return _template(build(slot), length), tuple(referred)


@lru_cache(maxsize=4)
def _font_templates(font: Path) -> dict[str, tuple[Template, tuple[str, ...]]]:
    """Per object of the stamp font, its :func:`_templated` form. Depends only on the font
    program (a process constant, no agency's data)."""
    program = _font_program(font)
    out = {}
    for key in _FONT_ORDER:
        data = _FONT_DATA[key](program)
        out[key] = _templated(
            lambda ref, key=key: _font_object(program, key, ref)[0],  # type: ignore[misc]
            None if data is None else len(data),
        )
    return out


class _StampFont:
    """The stamp font in one document: its objects added on first use (a Type0 font over a
    CIDFontType2, Identity-H, ISO 32000-1 §9.7), text shown as glyph ids. The subset has no
    layout tables, so a glyph's advance is its width: what :func:`text_width` measures."""

    def __init__(self, writer: BasePdfFileWriter, font: Path) -> None:
        self.writer = writer
        self.font = font
        self.program = _font_program(font)
        self._ref: generic.IndirectObject | None = None
        # Glyph ids shown so far: the /W array lists these (:class:`_UsedWidths`).
        self.used: set[int] = set()

    def show(self, text: str) -> tuple[bytes, float]:
        """The ``Tj`` operator for ``text`` (NFC) and its advance in em."""
        glyphs = [self.program.cmap.get(ord(c), 0) for c in unicodedata.normalize("NFC", text)]
        self.used.update(glyphs)
        advance = sum(self.program.widths[g] for g in glyphs) / 1000
        return b"<%s> Tj" % "".join(f"{g:04X}" for g in glyphs).encode(), advance

    def resource(self) -> generic.IndirectObject:
        if self._ref is not None:
            return self._ref
        add = self.writer.add_object
        refs: dict[str, generic.IndirectObject] = {}
        # /W is written with the document, from the glyphs shown by then (a direct array).
        widths = _UsedWidths(self.program.widths, self.used)

        def ref(key: str) -> generic.PdfObject:
            return widths if key == "widths" else refs[key]

        if self.writer.security_handler is None:
            templates = _font_templates(self.font)
            for key in _FONT_ORDER:
                template, referred = templates[key]
                data = _FONT_DATA[key](self.program)
                refs[key] = add(_Serialised(template, tuple(ref(r) for r in referred), data))
        else:
            for key in _FONT_ORDER:
                obj, data = _font_object(self.program, key, ref)
                if data is not None:
                    obj = generic.StreamObject(dict(obj), encoded_data=data)
                refs[key] = add(obj)
        self._ref = refs["font"]
        return self._ref


def _image_dicts(
    width_px: int, height_px: int, ref: Callable[[str], generic.PdfObject]
) -> tuple[generic.DictionaryObject, generic.DictionaryObject]:
    """The dictionaries of an image XObject of ``width_px`` × ``height_px`` 8-bit samples and
    of its soft mask, Flate with PNG row filters (stamp_images._png_idat, ISO 32000-1
    §7.4.4.4); the image's /SMask is ``ref("smask")``."""
    common = {
        "/Type": pdf_name("/XObject"),
        "/Subtype": pdf_name("/Image"),
        "/Width": generic.NumberObject(width_px),
        "/Height": generic.NumberObject(height_px),
        "/BitsPerComponent": generic.NumberObject(8),
        "/Filter": pdf_name("/FlateDecode"),
    }

    def predictor(colors: int) -> generic.DictionaryObject:
        return generic.DictionaryObject(
            {
                pdf_name("/Predictor"): generic.NumberObject(15),
                pdf_name("/Colors"): generic.NumberObject(colors),
                pdf_name("/BitsPerComponent"): generic.NumberObject(8),
                pdf_name("/Columns"): generic.NumberObject(width_px),
            }
        )

    smask = generic.DictionaryObject(
        {
            **{pdf_name(k): v for k, v in common.items()},
            pdf_name("/ColorSpace"): pdf_name("/DeviceGray"),
            pdf_name("/DecodeParms"): predictor(1),
        }
    )
    rgb = generic.DictionaryObject(
        {
            **{pdf_name(k): v for k, v in common.items()},
            pdf_name("/ColorSpace"): pdf_name("/DeviceRGB"),
            pdf_name("/DecodeParms"): predictor(3),
            pdf_name("/SMask"): ref("smask"),
        }
    )
    return smask, rgb


@lru_cache(maxsize=64)
def _image_templates(
    width_px: int, height_px: int, rgb_length: int, alpha_length: int
) -> tuple[tuple[Template, tuple[str, ...]], tuple[Template, tuple[str, ...]]]:
    """The :func:`_templated` soft mask and image dictionaries for these sizes: numbers only,
    no image's samples (those are written from the :class:`StampImage` each time), so no
    agency's data is kept here; bounded."""
    return (
        _templated(lambda ref: _image_dicts(width_px, height_px, ref)[0], alpha_length),
        _templated(lambda ref: _image_dicts(width_px, height_px, ref)[1], rgb_length),
    )


class KindStamp(BaseStamp):
    """Draws a :class:`KindStampStyle` in the box pyHanko gives it (the widget's size):
    the top lines from the top, the bottom lines from the bottom, the image centred between
    them, scaled down (never up) to fit, aspect kept. Every text in one embedded font subset."""

    def __init__(self, writer: BasePdfFileWriter, style: KindStampStyle, box: BoxConstraints):
        super().__init__(writer=writer, style=style, box=box)

    def _image_ref(self, image: StampImage) -> generic.IndirectObject:
        # The samples were compressed once (stamp_images.stamp_image); each document gets its
        # own two objects (the image and its soft mask, ISO 32000-1 §11.6.5.3).
        writer = self._ensure_writer
        sizes = (image.width_px, image.height_px, len(image.rgb_flate), len(image.alpha_flate))
        if writer.security_handler is None:
            (smask_t, _), (rgb_t, _) = _image_templates(*sizes)
            smask_ref = writer.add_object(_Serialised(smask_t, (), image.alpha_flate))
            return writer.add_object(_Serialised(rgb_t, (smask_ref,), image.rgb_flate))
        null = generic.NullObject()
        smask_dict, _ = _image_dicts(image.width_px, image.height_px, lambda _k: null)
        smask_ref = writer.add_object(
            generic.StreamObject(dict(smask_dict), encoded_data=image.alpha_flate)
        )
        _, rgb_dict = _image_dicts(image.width_px, image.height_px, lambda _k: smask_ref)
        return writer.add_object(generic.StreamObject(dict(rgb_dict), encoded_data=image.rgb_flate))

    def _text(self, font: _StampFont, line: _Line, y: float, width: float) -> bytes:
        shown, advance = font.show(line.text)
        x = max(0.0, (width - advance * line.size) / 2)
        return b"BT /F1 %g Tf %g %g Td %s ET" % (line.size, x, y, shown)

    def _render_inner_content(self) -> list[bytes]:
        style: KindStampStyle = self.style
        width, height = self.box.width, self.box.height
        commands = [b"q", BLACK]
        if style.planned is not None:
            # A box smaller than planned (placement's 90 % top-margin fallback or a shrink
            # step, a smaller existing field): everything is drawn at that scale, text
            # included, laid out in the planned size — a 10 pt line in a 90 % box ran past
            # the widget edge and was cut ("…+07:0", new user 14 F3). Never scaled up.
            scale = min(1.0, width / style.planned[0], height / style.planned[1])
            if scale < 1.0:
                commands.append(b"%g 0 0 %g 0 0 cm" % (scale, scale))
                width, height = width / scale, height / scale
        lines = style.top + style.bottom
        if lines:
            engine = _StampFont(self._ensure_writer, style.font)
            self.set_resource(ResourceType.FONT, pdf_name("/F1"), engine.resource())
            y = height - PAD
            for line in style.top:
                commands.append(self._text(engine, line, y - ASCENT_EM * line.size, width))
                y -= line.height
            top_end = y
            y = PAD
            for line in reversed(style.bottom):
                commands.append(self._text(engine, line, y + DESCENT_EM * line.size, width))
                y += line.height
            bottom_end = y
        else:
            top_end, bottom_end = height, 0.0
        if style.image is not None:
            spec = style.image
            room_w = min(width, spec.max_width)
            room_h = min(max(top_end - bottom_end, 1.0), spec.max_height)
            scale = min(1.0, room_w / spec.image.width_pt, room_h / spec.image.height_pt)
            w, h = spec.image.width_pt * scale, spec.image.height_pt * scale
            x = (width - w) / 2
            y = bottom_end + ((top_end - bottom_end) - h) / 2
            self.set_resource(ResourceType.XOBJECT, pdf_name("/Im1"), self._image_ref(spec.image))
            commands.append(b"q %g 0 0 %g %g %g cm /Im1 Do Q" % (w, h, x, y))
        commands.append(b"Q")
        return commands


@dataclass(frozen=True)
class KindStampStyle(BaseStampStyle):
    """A pyHanko stamp style for one appearance kind: text lines at the top and bottom of the
    box, an optional image between them; no border, no background."""

    top: tuple[_Line, ...] = ()
    bottom: tuple[_Line, ...] = ()
    image: _Image | None = None
    font: Path = LIBERATION_SERIF
    border_width: int = 0
    # The (width, height) in points the lines were measured for (the plan's box): a smaller
    # widget draws everything scaled down to fit, the text too. None: drawn as given.
    planned: tuple[float, float] | None = None

    def create_stamp(
        self, writer: BasePdfFileWriter, box: BoxConstraints, text_params: dict[str, Any]
    ) -> KindStamp:
        return KindStamp(writer, self, box)


@dataclass(frozen=True)
class StampPlan:
    """What a stamp needs: ``width`` × ``height`` points, the ``region`` it belongs in
    (``top-right`` of page 1, or the ``signature-block``), whether it goes ``over_signature``
    (the seal over the left third of the person signature before it), and the style."""

    kind: str
    width: float
    height: float
    region: Region
    over_signature: bool
    style: KindStampStyle


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _block(kind: str, given: list[_Line], font: Path) -> StampPlan:
    # A long agency name wrapped, not one line reaching into the left half of the page.
    lines = [
        _Line(part, line.size)
        for line in given
        for part in wrap_text(line.text, line.size, MAX_BLOCK_WIDTH_PT - 2 * PAD, font)
    ]
    width = math.ceil(max(text_width(line.text, line.size, font) for line in lines) + 2 * PAD)
    height = math.ceil(sum(line.height for line in lines) + 2 * PAD)
    style = KindStampStyle(top=tuple(lines), font=font, planned=(width, height))
    return StampPlan(kind, width, height, "top-right", False, style)


def plan_stamp(
    kind: str,
    texts: StampTexts,
    *,
    signature: StampImage | None = None,
    seal: StampImage | None = None,
    font_size: float = 10.0,
) -> StampPlan | None:
    """The stamp of ``kind`` (one of :data:`KINDS`; ``None`` for ``none``: an invisible
    signature), as Nghị định 30/2020 Appendix I describes it:

    - ``person``: the title line, the signature image (blue, as uploaded) centred below it,
      the full name and the signing time (:func:`readable_time`); region ``signature-block``.
    - ``seal``: the seal image at its real size (``seal.width_mm`` × ``height_mm``, 72 pt per
      inch), nothing else; region ``signature-block``, over the person signature.
    - ``copy``: SAO Y / SAO LỤC / TRÍCH SAO, the copying agency, the time as ISO 8601 +07:00.
      Lines of the text blocks wrap at :data:`MAX_BLOCK_WIDTH_PT` (the right half of a page).
    - ``annex``: the agency, the main document's number and symbol, the time (ISO 8601).
    - ``digitised``: the digitising unit and the time (ISO 8601).
    The three text blocks: Liberation Serif ``font_size`` pt, black, upright, top right of
    page 1. ``ValueError`` when the kind is unknown or an image or text it needs is missing.
    """
    font = kinds_font()
    line = functools.partial(_Line, size=font_size)
    if kind == "none":
        return None
    if kind == "person":
        if signature is None:
            raise ValueError("a person stamp needs the officer's signature image")
        # A title may take two lines: "KT. GIÁM ĐỐC" / "PHÓ GIÁM ĐỐC" (ký thay, ND30 Art. 13).
        top = [line(_nfc(part)) for part in texts.title.split("\n")] if texts.title else []
        bottom = [line(_nfc(texts.signer_name)), _Line(readable_time(texts.moment), font_size - 1)]
        image_w = min(signature.width_pt, 2 * MIN_PERSON_WIDTH_PT)
        image_h = min(signature.height_pt * image_w / signature.width_pt, MAX_SIGNATURE_HEIGHT_PT)
        texts_w = max(text_width(x.text, x.size, font) for x in top + bottom)
        width = max(MIN_PERSON_WIDTH_PT, texts_w + 2 * PAD, image_w + 2 * PAD)
        height = sum(x.height for x in top + bottom) + image_h + 2 * PAD
        width, height = math.ceil(width), math.ceil(height)
        style = KindStampStyle(
            top=tuple(top),
            bottom=tuple(bottom),
            image=_Image(signature, image_w, MAX_SIGNATURE_HEIGHT_PT),
            font=font,
            planned=(width, height),
        )
        return StampPlan(kind, width, height, "signature-block", False, style)
    if kind == "seal":
        if seal is None:
            raise ValueError("a seal stamp needs the agency's seal image")
        style = KindStampStyle(image=_Image(seal, seal.width_pt, seal.height_pt), font=font)
        return StampPlan(kind, seal.width_pt, seal.height_pt, "signature-block", True, style)
    moment = vietnam_time(texts.moment)
    unit = _nfc(texts.unit or texts.signer_name)
    if kind == "copy":
        copy_kind = _nfc(texts.copy_kind or COPY_KINDS[0])
        if copy_kind not in COPY_KINDS:
            raise ValueError(f"unknown copy kind {copy_kind!r}")
        return _block(kind, [line(copy_kind), line(unit), line(moment)], font)
    if kind == "annex":
        if not texts.document_number:
            raise ValueError("an annex stamp needs the main document's number and symbol")
        number = _nfc(texts.document_number)
        return _block(kind, [line(unit), line(f"Kèm theo văn bản số {number}"), line(moment)], font)
    if kind == "digitised":
        return _block(kind, [line(unit), line(f"Số hóa: {moment}")], font)
    raise ValueError(f"unknown appearance kind {kind!r}")


def plan_person_in_gap(
    texts: StampTexts, signature: StampImage, room_height: float, *, font_size: float = 10.0
) -> StampPlan | None:
    """The person stamp for the signing space of a signer block the page already prints
    (Nghị định 30/2020, Appendix I: the signature goes between the title line and the full
    name the document carries): the signature image only, no second title or name, with the
    signing time in small type (``font_size`` − 1 pt) below it when the image still gets
    :data:`MIN_GAP_SIGNATURE_HEIGHT_PT`. ``room_height``: the height available (points).
    ``None`` when even the image alone would be under that minimum height."""
    image_w = min(signature.width_pt, 2 * MIN_PERSON_WIDTH_PT)
    natural_h = min(signature.height_pt * image_w / signature.width_pt, MAX_SIGNATURE_HEIGHT_PT)
    aspect = signature.width_pt / signature.height_pt
    time = _Line(readable_time(texts.moment), font_size - 1)
    font = kinds_font()
    with_time = room_height - time.height - PAD
    if with_time >= MIN_GAP_SIGNATURE_HEIGHT_PT:
        image_h = min(natural_h, with_time)
        bottom: tuple[_Line, ...] = (time,)
        width = max(image_h * aspect, text_width(time.text, time.size, font) + 2 * PAD)
        height = image_h + time.height + PAD
    elif min(natural_h, room_height) >= MIN_GAP_SIGNATURE_HEIGHT_PT:
        image_h = min(natural_h, room_height)
        bottom = ()
        width = image_h * aspect
        height = image_h
    else:
        return None
    style = KindStampStyle(
        bottom=bottom, image=_Image(signature, image_h * aspect, image_h), font=font
    )
    return StampPlan("person", math.ceil(width), math.ceil(height), "signature-block", False, style)


@dataclass(frozen=True)
class KindAppearance:
    """A profile's (or request's) appearance kind with everything it draws, resolved before
    signing: the images decoded (:mod:`.stamp_images`), the texts chosen. The engine asks
    :meth:`plan` with the signer's name, organisation and title from the certificate."""

    kind: str
    font_size: float = 10.0
    margin: float = 24.0
    # Placement (signing/placement.py): a prepared signature field to fill, and what to do when
    # no free space fits the stamp.
    field_name: str | None = None
    when_full: Literal["shrink", "next-page", "refuse"] = "shrink"
    title: str | None = None
    unit: str | None = None
    copy_kind: str | None = None
    document_number: str | None = None
    signature: StampImage | None = None
    seal: StampImage | None = None

    def plan(
        self,
        signer_name: str,
        organisation: str | None,
        moment: datetime,
        *,
        cert_title: str | None = None,
    ) -> StampPlan | None:
        """The stamp for this signer and time (``None``: invisible). The title line is the
        profile's (one or two lines: "KT. GIÁM ĐỐC\nPHÓ GIÁM ĐỐC", which a certificate's
        title "Phó Giám đốc" cannot say), else the certificate's title attribute; the unit the
        profile's, else the certificate's organisation."""
        texts = StampTexts(
            signer_name=signer_name,
            moment=moment,
            title=self.title or cert_title,
            unit=self.unit or organisation,
            copy_kind=self.copy_kind,
            document_number=self.document_number,
        )
        return plan_stamp(
            self.kind, texts, signature=self.signature, seal=self.seal, font_size=self.font_size
        )

    def plan_in_gap(self, moment: datetime, room_height: float) -> StampPlan | None:
        """For a ``person`` kind: :func:`plan_person_in_gap` (``None`` for other kinds or
        when the room is too small)."""
        if self.kind != "person" or self.signature is None:
            return None
        texts = StampTexts(signer_name="", moment=moment)
        return plan_person_in_gap(texts, self.signature, room_height, font_size=self.font_size)


# Annotation flags (ISO 32000-1 Table 165) that keep a widget from being shown.
_HIDDEN_FLAGS = 2 | 32  # Hidden, NoView


@dataclass(frozen=True)
class _CertFacts:
    """What the seal's check reads of a signer certificate: its issuer (DER) and serial
    number, to match a signer info's ``sid``, and its subject's organisation (O) as
    asn1crypto's ``subject.native`` gives it (a string, a list when repeated, or ``None``)."""

    issuer: bytes
    serial: int
    organisation: Any


# Certificate facts, per agency: (the sealing agency's organisation, certificate DER) → facts.
# Why: every seal over a person signature read each certificate embedded in that signature's
# CMS (issuer, serial number) and the signer's subject, parsing them with asn1crypto (~0.15 ms
# of each seal, ``python -m bench.run --appearance-only``); an agency's officers sign with the
# same few certificates over and over. Keyed by the certificate's exact bytes (a renewed or
# changed certificate is another entry) and by the agency asking (two agencies never share an
# entry); bounded, least recently used first out. Facts only, no parsed objects: asn1crypto's
# lazy parsing is not thread-safe, so nothing parsed is shared between signatures.
CERT_FACTS_MAX = 256
_cert_facts: OrderedDict[tuple[str, bytes], _CertFacts] = OrderedDict()
_cert_facts_lock = threading.Lock()


def _facts(organisation: str, der: bytes, cert: Any) -> _CertFacts:
    """The :class:`_CertFacts` of ``cert`` (whose DER is ``der``) for ``organisation``'s
    check, from the cache or read now."""
    key = (organisation, der)
    with _cert_facts_lock:
        found = _cert_facts.get(key)
        if found is not None:
            _cert_facts.move_to_end(key)
            return found
    facts = _CertFacts(
        cert.issuer.dump(), cert.serial_number, cert.subject.native.get("organization_name")
    )
    with _cert_facts_lock:
        _cert_facts[key] = facts
        while len(_cert_facts) > CERT_FACTS_MAX:
            _cert_facts.popitem(last=False)
    return facts


def _signer_certificate(
    signed_data: Any, signer_info: Any, organisation: str
) -> tuple[Any, Any] | None:
    """The embedded certificate whose issuer and serial number are, byte for byte, the signer
    info's ``sid`` (RFC 5652 §5.3), with its subject's organisation (``subject.native``'s
    O), else ``None``. Only to decide where a seal goes: pyHanko's selection compares names
    by RFC 4518 string preparation (~4 ms a signature in asn1crypto), which the exact-bytes
    match our own and every common signer's CMS satisfies. ``organisation``: the sealing
    agency's, the key of its :data:`_cert_facts` entries."""
    sid = signer_info["sid"]
    if sid.name != "issuer_and_serial_number":
        return None
    issuer = sid.chosen["issuer"].dump()
    serial = sid.chosen["serial_number"].native
    for choice in signed_data["certificates"]:
        if choice.name != "certificate":
            continue
        cert = choice.chosen
        facts = _facts(organisation, cert.dump(), cert)
        if facts.serial == serial and facts.issuer == issuer:
            return cert, facts.organisation
    return None


def _document_bytes(reader: PdfFileReader) -> bytes | None:
    """The bytes the reader reads, when it reads an in-memory buffer (``BytesIO.getvalue``:
    for a buffer made from ``bytes`` and never written, that very object, no copy)."""
    getvalue = getattr(reader.stream, "getvalue", None)
    value = getvalue() if getvalue is not None else None
    return value if isinstance(value, bytes) else None


def _covered_digest(
    reader: PdfFileReader, embedded: Any
) -> tuple[bytes, prefix_digest.CoveredPrefix | None]:
    """The /ByteRange digest of ``embedded`` (pyHanko's ``EmbeddedPdfSignature``), the same
    value as its ``compute_digest()``; for a standard /ByteRange ``[0 a b n]`` over an
    in-memory document also the hash state after its first ``a`` bytes, which the seal's own
    digest continues (signing/prefix_digest.py: those bytes are hashed once)."""
    data = _document_bytes(reader)
    byte_range = list(embedded.byte_range)
    if data is not None and all(isinstance(v, int) for v in byte_range):
        try:
            return prefix_digest.hash_with_prefix(
                data, [int(v) for v in byte_range], embedded.external_md_algorithm
            )
        except ValueError:
            pass  # another /ByteRange shape: pyHanko reads it as it does
    return embedded.compute_digest(), None


def _same_agency_signature(
    reader: PdfFileReader, field: generic.DictionaryObject, name: str, organisation: str
) -> tuple[bool, prefix_digest.CoveredPrefix | None]:
    """Whether the field's /V is a signature whose CMS is intact and cryptographically valid
    (:func:`signing_service.verification.cms.signature_integrity`, pyHanko's steps: the
    /ByteRange digest matches the signed attributes and the signer's key signed them) and whose
    signer certificate names ``organisation`` as its organisation (O). No trust or revocation
    check: this decides only where a seal goes, and a forged or copied /V (any dictionary, or
    another document's CMS) fails it. With ``True``, the hash of the document up to that
    signature's /Contents when it could be kept (:func:`_covered_digest`), else ``None``."""
    from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature

    from signing_service.verification.cms import signature_integrity

    try:
        embedded = EmbeddedPdfSignature(reader, field, name)
        found = _signer_certificate(embedded.signed_data, embedded.signer_info, organisation)
        if found is None or found[1] != organisation:
            return False, None
        cert = found[0]
        digest, prefix = _covered_digest(reader, embedded)
        intact, valid = signature_integrity(
            embedded.signer_info,
            cert,
            expected_content_type="data",
            actual_digest=digest,
        )
        return (True, prefix) if intact and valid else (False, None)
    except Exception:  # noqa: BLE001
        # A hostile /V can fail anywhere in the CMS and PDF parsing (asn1crypto, pyHanko,
        # cryptography): any failure means "not a signature the seal may go over".
        return False, None


@dataclass(frozen=True)
class SealTarget:
    """The signature a seal goes over: its field ``name``, and ``prefix``, the hash of the
    document bytes before that signature's /Contents (``None`` when not kept), from which the
    seal's own document digest continues (signing/prefix_digest.py)."""

    name: str
    prefix: prefix_digest.CoveredPrefix | None


def seal_target(reader: PdfFileReader, organisation: str | None) -> SealTarget | None:
    """The last signed signature field (in field order) with a shown widget (non-degenerate
    /Rect, neither Hidden nor NoView) whose signature is by the same agency as the seal: its
    signer certificate's organisation (O) is ``organisation`` (the seal's signing
    certificate's) and the signature is intact (:func:`_same_agency_signature`). ``None``
    otherwise (and when ``organisation`` is ``None``): the seal is then placed by the normal
    rule, like a seal with no signature before it. Why: a seal is the only stamp allowed over
    other content; put over whatever signature came last, another agency's seal covered (and
    could blank out) that agency's visible signature, and a submitter's fake signature field
    chose which words it covered (red team 10, F1).

    The shown fields are checked from the last one back and the first that passes is the
    answer (the same field as checking all of them in order and keeping the last that
    passed): a check hashes what the signature covers, most of the document."""
    if not organisation:
        return None
    shown_fields: list[tuple[str, generic.DictionaryObject]] = []
    for name, value, field_ref in enumerate_sig_fields(reader, filled_status=True):
        if value is None:
            continue
        field = field_ref.get_object()
        # Read with [] (dereferenced and, in an encrypted document, decrypted): .get() would
        # hand out pyHanko's DecryptedObjectProxy, and the seal missed the person signature.
        kids = field["/Kids"] if "/Kids" in field else ()  # noqa: SIM401 - see above
        widgets = [field] if "/Rect" in field else [k.get_object() for k in kids]
        shown = False
        for widget in widgets:
            try:
                rect = [float(v) for v in (widget["/Rect"] if "/Rect" in widget else ())]  # noqa: SIM401
                flags = int(widget["/F"] if "/F" in widget else 0)  # noqa: SIM401
            except (TypeError, ValueError, AttributeError):
                continue
            if flags & _HIDDEN_FLAGS:
                continue
            if len(rect) == 4 and abs(rect[2] - rect[0]) >= 1 and abs(rect[3] - rect[1]) >= 1:
                shown = True
        if shown:
            shown_fields.append((name, field))
    for name, field in reversed(shown_fields):
        same, prefix = _same_agency_signature(reader, field, name, organisation)
        if same:
            return SealTarget(name, prefix)
    return None


def last_visible_signature(reader: PdfFileReader, organisation: str | None) -> str | None:
    """The name of the field :func:`seal_target` chooses, or ``None``."""
    target = seal_target(reader, organisation)
    return target.name if target is not None else None
