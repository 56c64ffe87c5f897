"""Where a visible signature goes on the page (issue 10, "Placement that respects the page").

Rules, in order:

1. A prepared empty signature field is filled when the request or profile names it
   (``field_name``), or, unnamed, when the document has exactly one empty signature field with
   a visible widget (e.g. ``ChuKyLanhDao`` on a form). A named field that does not exist is
   ``SIGNATURE_FIELD_NOT_FOUND``; one already signed is ``SIGNATURE_FIELD_ALREADY_SIGNED``.
2. ``over_signature``: the agency's seal over the left third of the person's signature widget
   (Nghị định 30/2020, Appendix I), kept inside the visible page. Only here may the box cover
   text and that widget: the seal covers part of the signer block by design.
3. Otherwise by rule, in the page as the reader sees it: ``top-right`` of page 1 (copies,
   annexes, digitised documents) or the ``signature-block`` at the bottom right of the last
   page, below the body text (person signatures). The box never covers the page's text (the
   glyph-run boxes PDFium measures, signing/textlayout.py) nor an existing widget or markup
   annotation: later signatures stack beside or below earlier ones. When nothing fits,
   ``when_full`` decides: ``shrink`` (keeping the proportions, down to :data:`MIN_SCALE`),
   ``next-page`` (``top-right`` only: the following pages in turn) or ``refuse``; all end in
   ``NO_SPACE_FOR_SIGNATURE`` when nothing fits.

Page geometry (ISO 32000-1 §7.7.3.3, §14.11.2): ``/MediaBox``, ``/CropBox`` and ``/Rotate``
are inheritable from the page tree; the visible area is CropBox ∩ MediaBox, whose origin need
not be 0,0; ``/Rotate`` turns the page clockwise for display. Boxes are computed in "view
space" (the visible area as displayed: origin top left, v downwards, in points) and returned in
the page's default user space, ready for a widget's ``/Rect``. On a rotated page the widget's
content must be turned to stay upright: :func:`upright` wraps a stamp style so that it is.

Why PDFium for the text (signing/textlayout.py): it gives the text boxes of a loaded page in
about half a millisecond, in the page's user space; poppler's ``pdftotext`` as a subprocess per
signature cost 6-13 ms (the bench's visible signature was 2.3× the invisible one). It runs in
one persistent worker process with a time and memory budget, killed when over it (an
in-process layout of a pathological page could not be interrupted). Only the target page is
analysed. The tests check placements against poppler's word boxes (an independent tool).
"""

from __future__ import annotations

import logging
import math
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from operator import or_
from typing import Any, Literal

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.layout import BoxConstraints
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.stamp import BaseStampStyle, TextStampStyle

from signing_service.signing import textlayout
from signing_service.verification.rects import read_rect

log = logging.getLogger(__name__)

Region = Literal["top-right", "signature-block", "top-left"]
WhenFull = Literal["shrink", "next-page", "refuse"]
# ``next-page`` looks at most this many pages, and one placement spends at most this many
# seconds reading page text (each page also has textlayout.TIMEOUT).
MAX_LAYOUT_PAGES = 10
LAYOUT_BUDGET_SECONDS = 4.0
Rect = tuple[float, float, float, float]

# Room kept between the stamp and any text line or earlier widget (points).
GAP = 4.0
# ``shrink`` keeps at least half the requested size (Appendix I wants the text readable: 10 pt
# at half size is 5 pt, the smallest that still prints legibly).
MIN_SCALE = 0.5
SHRINK_STEPS = (1.0, 0.9, 0.8, 0.7, 0.6, MIN_SCALE)
# In the top margin above the motto a text block may be drawn at 90 % (10 pt → 9 pt) before
# it goes below the motto instead.
TOP_BAND_SCALES = (1.0, 0.9)
# The edge distance in that top margin for the copy, annex and digitised blocks (3 mm): a
# 3-line 10 pt block then fits above text starting 20 mm from the top (Nghị định 30/2020's
# top margin is 20-25 mm).
TOP_BAND_MARGIN = 3 * 72 / 25.4
# Occupancy grid: cells of at least CELL points (positions are found to that precision;
# 2 pt: a few milliseconds for an A4 page), and at most MAX_CELLS cells on huge pages.
CELL = 2.0
MAX_CELLS = 400_000
# ... and at most this many per side: a 10^9 × 10 pt page must not make 10^8-bit rows.
MAX_SIDE_CELLS = 4_000
# A line is body text when it crosses the page's vertical centre line and is at least this
# share of the page wide: a centred page number or title is not.
BODY_LINE_SHARE = 0.4
# Text starting in this bottom share of the page is a footer (page number, file name): a
# signature block on a page without body lines goes below the lowest text above it.
FOOTER_SHARE = 0.1
# Page tree depth bound (a cyclic /Parent or /Kids chain).
MAX_TREE_DEPTH = 64
# Annotations that are not obstacles: links sit over text already; popups are hidden.
_NOT_OBSTACLES = {"/Link", "/Popup"}
DEFAULT_MEDIA_BOX: Rect = (0.0, 0.0, 595.0, 842.0)


class PlacementError(Exception):
    """No place for the signature. ``code``: SIGNATURE_FIELD_NOT_FOUND |
    SIGNATURE_FIELD_ALREADY_SIGNED | SIGNATURE_FIELD_NOT_VISIBLE | NO_SPACE_FOR_SIGNATURE |
    PAGE_LAYOUT_UNAVAILABLE (the service's 422 codes, messages in errors.py)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Placement:
    page_index: int  # 0-based
    box: Rect  # x1, y1, x2, y2 in the page's default user space
    existing_field: str | None  # a prepared empty signature field to fill, else None
    # The page's /Rotate (0, 90, 180, 270): the widget's content is turned by it (upright()).
    rotate: int = 0


@dataclass(frozen=True)
class _Page:
    index: int
    ref: tuple[int, int] | None
    obj: generic.DictionaryObject
    visible: Rect
    media: Rect
    rotate: int

    @property
    def view_size(self) -> tuple[float, float]:
        width, height = _width(self.visible), _height(self.visible)
        return (height, width) if self.rotate in (90, 270) else (width, height)


def _width(r: Rect) -> float:
    return r[2] - r[0]


def _height(r: Rect) -> float:
    return r[3] - r[1]


def _rect(value: Any) -> Rect | None:
    """A normalised rectangle from a PDF array, or None when it is not one."""
    try:
        nums = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(nums) != 4 or not all(math.isfinite(v) for v in nums):
        return None
    x1, y1, x2, y2 = nums
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def _intersect(a: Rect, b: Rect) -> Rect | None:
    r = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return r if r[2] > r[0] and r[3] > r[1] else None


def user_to_view(rect: Rect, frame: Rect, rotate: int) -> Rect:
    """``rect`` (user space) in the view space of ``frame`` displayed turned ``rotate``
    degrees clockwise: origin at the displayed top left, v downwards."""
    fx1, fy1, fx2, fy2 = frame

    def point(x: float, y: float) -> tuple[float, float]:
        if rotate == 90:
            return y - fy1, x - fx1
        if rotate == 180:
            return fx2 - x, y - fy1
        if rotate == 270:
            return fy2 - y, fx2 - x
        return x - fx1, fy2 - y

    (u1, v1), (u2, v2) = point(rect[0], rect[1]), point(rect[2], rect[3])
    return (min(u1, u2), min(v1, v2), max(u1, u2), max(v1, v2))


def view_to_user(rect: Rect, frame: Rect, rotate: int) -> Rect:
    """The inverse of :func:`user_to_view`."""
    fx1, fy1, fx2, fy2 = frame

    def point(u: float, v: float) -> tuple[float, float]:
        if rotate == 90:
            return fx1 + v, fy1 + u
        if rotate == 180:
            return fx2 - u, fy1 + v
        if rotate == 270:
            return fx2 - v, fy2 - u
        return fx1 + u, fy2 - v

    (x1, y1), (x2, y2) = point(rect[0], rect[1]), point(rect[2], rect[3])
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def _get(obj: generic.DictionaryObject, key: str, default: Any = None) -> Any:
    """``obj[key]`` dereferenced (and decrypted: ``dict.get`` would return pyHanko's raw
    ``DecryptedObjectProxy`` in an encrypted document), or ``default``."""
    return obj[key] if key in obj else default  # noqa: SIM401 - get() is the raw value


def _ref(value: Any) -> tuple[int, int] | None:
    if isinstance(value, generic.IndirectObject):
        return (value.idnum, value.generation)
    return None


def _pages(reader: PdfFileReader) -> Iterator[_Page]:
    """The pages in order, with their inherited boxes and rotation resolved."""
    index = 0

    def walk(
        node_ref: Any, inherited: dict[str, Any], depth: int, seen: set[tuple[int, int]]
    ) -> Iterator[_Page]:
        nonlocal index
        ref = _ref(node_ref)
        if depth > MAX_TREE_DEPTH or (ref is not None and ref in seen):
            return
        if ref is not None:
            seen.add(ref)
        if isinstance(node_ref, generic.DecryptedObjectProxy):
            node = node_ref.decrypted
        elif isinstance(node_ref, generic.IndirectObject):
            node = node_ref.get_object()
        else:
            node = node_ref
        if not isinstance(node, generic.DictionaryObject):
            return
        attrs = dict(inherited)
        for key in ("/MediaBox", "/CropBox", "/Rotate"):
            if key in node:
                attrs[key] = node[key]
        kids = _get(node, "/Kids")
        if _get(node, "/Type") == "/Pages" or (kids is not None and _get(node, "/Type") != "/Page"):
            if isinstance(kids, generic.ArrayObject):
                for i in range(len(kids)):
                    yield from walk(kids.raw_get(i), attrs, depth + 1, seen)
            return
        media = _rect(attrs.get("/MediaBox")) or DEFAULT_MEDIA_BOX
        if _width(media) <= 0 or _height(media) <= 0:
            media = DEFAULT_MEDIA_BOX
        crop = _rect(attrs.get("/CropBox"))
        visible = (_intersect(crop, media) if crop else None) or media
        try:
            rotate = int(attrs.get("/Rotate", 0)) % 360
        except (TypeError, ValueError):
            rotate = 0
        if rotate % 90:
            rotate = 0  # not a multiple of 90: invalid, viewers ignore it
        yield _Page(index, ref, node, visible, media, rotate)
        index += 1

    yield from walk(reader.root.raw_get("/Pages"), {}, 0, set())


def _widget_rect(widget: generic.DictionaryObject) -> Rect | None:
    # As viewers draw it: a corner written as a reference resolved, a non-number read as 0
    # (red team 21: such a widget was skipped, and a new stamp could go over it).
    rect = read_rect(_get(widget, "/Rect")).box
    if rect is None or _width(rect) <= 0 or _height(rect) <= 0:
        return None
    return rect


def _annotation_obstacles(page: _Page) -> list[Rect]:
    """User-space rectangles of the page's visible annotations (widgets of every field, our
    earlier signatures included, and markup), except links and popups."""
    annots = _get(page.obj, "/Annots")
    out: list[Rect] = []
    if not isinstance(annots, generic.ArrayObject):
        return out
    for i in range(len(annots)):
        annot = annots[i]
        if not isinstance(annot, generic.DictionaryObject):
            continue
        if _get(annot, "/Subtype") in _NOT_OBSTACLES:
            continue
        flags = _get(annot, "/F", 0)
        if isinstance(flags, int) and flags & 0b10:  # Hidden
            continue
        rect = _widget_rect(annot)
        if rect is not None:
            out.append(rect)
    return out


def _pdf_bytes(reader: PdfFileReader) -> bytes:
    stream = reader.stream
    getvalue = getattr(stream, "getvalue", None)
    if getvalue is not None:
        return bytes(getvalue())
    position = stream.tell()
    try:
        stream.seek(0)
        return stream.read()
    finally:
        stream.seek(position)


def text_lines(pdf: bytes, page: _Page) -> list[Rect]:
    """User-space boxes ``(x1, y1, x2, y2)`` (points) of the text runs of ``page`` in ``pdf``
    (PDFium's glyph-run rectangles, measured in a worker process: signing/textlayout.py).

    The boxes are in the page's default user space whatever its ``/Rotate``, CropBox or
    origin. Errors: ``PlacementError("PAGE_LAYOUT_UNAVAILABLE")`` when PDFium cannot read the
    page, or takes longer than ``textlayout.TIMEOUT`` seconds (the worker is killed and
    replaced).
    """
    try:
        boxes = textlayout.default().page_lines(pdf, page.index)
    except textlayout.LayoutUnavailable as e:
        log.info("page %d: text layout unavailable (%s)", page.index + 1, e.reason)
        raise PlacementError("PAGE_LAYOUT_UNAVAILABLE", e.reason) from None
    return [box for box in (_rect(b) for b in boxes) if box is not None]


@dataclass(frozen=True)
class LastPageRequest:
    """The text lines of ``pdf``'s last page, asked of the layout worker ahead
    (:func:`request_last_page`)."""

    pdf: bytes
    pending: textlayout.PendingLayout


def request_last_page(pdf: bytes) -> LastPageRequest:
    """Ask the layout worker for the text lines of ``pdf``'s last page (PDFium's count, with
    their texts) and return at once (textlayout ``submit_last_page``).

    Why: a person stamp needs that page's lines (the signer block, the free space); asked
    before the document is parsed, the worker (another process) measures while the signing
    thread parses it with pyHanko, instead of the thread waiting for the worker afterwards
    (``python -m bench.run --appearance-only``, "of which placing it"). The same work, once:
    :class:`PageTexts` uses the answer for the page it is, or measures as before."""
    return LastPageRequest(pdf, textlayout.default().submit_last_page(pdf))


class PageTexts:
    """The text lines of one document's pages, each page measured at most once (PDFium, in
    the worker: signing/textlayout.py) however many rules look at it during one signature.

    Why: a person stamp first looks for the signer block the last page already prints
    (:func:`signer_gap`, the lines with their text) and, when there is none, searches the
    free space of the same page (:func:`place`, the same boxes): two worker round trips,
    each passing the whole document, for one page's lines (``python -m bench.run
    --appearance-only``, "of which placing it"). The boxes of :meth:`lines` and
    :meth:`text_lines` are the same (textlayout: the text is read over each line's box).
    ``requested``: the last page's lines asked for ahead (:func:`request_last_page`), used
    when it is the same document and the page PDFium counts last is the one asked for.

    ``reader`` must not change while this is in use (the engine's input document, read
    only). Not thread-safe: one per signature. Errors: as :func:`text_lines`
    (``PAGE_LAYOUT_UNAVAILABLE``; a failed page is asked again next time).
    """

    def __init__(self, reader: PdfFileReader, requested: LastPageRequest | None = None) -> None:
        self.reader = reader
        self._pdf: bytes | None = None
        # page index → its line boxes; and, when asked for, the lines with their texts.
        self._boxes: dict[int, list[Rect]] = {}
        self._texts: dict[int, list[tuple[Rect, str]]] = {}
        self._requested = requested

    def pdf(self) -> bytes:
        """The document's bytes (read from the reader's stream once)."""
        if self._pdf is None:
            self._pdf = _pdf_bytes(self.reader)
        return self._pdf

    def _take_requested(self, page: _Page) -> None:
        requested, self._requested = self._requested, None
        if requested is None:
            return
        pdf = self.pdf()
        if requested.pdf is not pdf and requested.pdf != pdf:
            return
        try:
            index, measured = requested.pending.result()
        except textlayout.LayoutUnavailable as e:
            if page.index == _last_page_index(self.reader):
                # PDFium's last page is this one in every document whose page tree both
                # read alike: the same failure as asking now, without the wait again.
                log.info("page %d: text layout unavailable (%s)", page.index + 1, e.reason)
                raise PlacementError("PAGE_LAYOUT_UNAVAILABLE", e.reason) from None
            return
        self._store(index, measured)

    def _store(self, index: int, measured: list[tuple[Rect, str]]) -> None:
        found = [
            (box, text) for box, text in ((_rect(b), t) for b, t in measured) if box is not None
        ]
        self._texts[index] = found
        self._boxes[index] = [box for box, _text in found]

    def measured(self, page: _Page) -> bool:
        """Whether ``page``'s lines are known (asking for them costs no layout)."""
        return page.index in self._boxes

    def lines(self, page: _Page) -> list[Rect]:
        """User-space boxes of ``page``'s text lines (:func:`text_lines`)."""
        self._take_requested(page)
        if page.index not in self._boxes:
            self._boxes[page.index] = text_lines(self.pdf(), page)
        return self._boxes[page.index]

    def text_lines(self, page: _Page) -> list[tuple[Rect, str]]:
        """``page``'s text lines with their texts (textlayout ``page_text_lines``): user-space
        boxes, normalised as :func:`text_lines` gives them."""
        self._take_requested(page)
        if page.index not in self._texts:
            try:
                measured = textlayout.default().page_text_lines(self.pdf(), page.index)
            except textlayout.LayoutUnavailable as e:
                log.info("page %d: text layout unavailable (%s)", page.index + 1, e.reason)
                raise PlacementError("PAGE_LAYOUT_UNAVAILABLE", e.reason) from None
            self._store(page.index, measured)
        return self._texts[page.index]


def _last_page_index(reader: PdfFileReader) -> int | None:
    last = None
    for page in _pages(reader):
        last = page.index
    return last


def normalised_name(text: str) -> str:
    """``text`` compared as a printed name: NFC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


@dataclass(frozen=True)
class SignerGap:
    """The signing space of a signer block the page already prints (Nghị định 30/2020,
    Appendix I: the title line, the space for the signature, the full name). ``page_index``
    0-based, ``rotate`` the page's /Rotate; ``box``: the free space between the title's and
    the name's text boxes, in view space (points, origin top left, v downwards), as wide as
    the column the two lines share; ``centre``: the horizontal centre of the name line."""

    page_index: int
    rotate: int
    visible: Rect
    box: Rect
    centre: float
    obstacles: tuple[Rect, ...]


def signer_gap(
    reader: PdfFileReader, signer_name: str, texts: PageTexts | None = None
) -> SignerGap | None:
    """The signing space between the title line and ``signer_name``'s printed name on the
    last page, or ``None`` when the page prints no such name, or no title line above it in
    the same column. The name line is the lowest line whose text equals the name
    (:func:`normalised_name`); the title line is the nearest line above it that overlaps it
    horizontally. ``texts``: the page texts of this signature, shared with :func:`place`
    (one measurement of the page). Errors: as :func:`text_lines` (``PAGE_LAYOUT_UNAVAILABLE``)."""
    wanted = normalised_name(signer_name)
    pages = list(_pages(reader))
    if not wanted or not pages:
        return None
    page = pages[-1]
    measured = (texts or PageTexts(reader)).text_lines(page)
    lines = [(user_to_view(box, page.visible, page.rotate), text) for box, text in measured]
    names = [box for box, text in lines if normalised_name(text) == wanted]
    if not names:
        return None
    name = max(names, key=lambda b: b[1])  # the lowest: the block is at the end
    above = [
        box for box, _text in lines if box[3] <= name[1] and box[0] < name[2] and name[0] < box[2]
    ]
    if not above:
        return None
    title = max(above, key=lambda b: b[3])
    column = (min(title[0], name[0]), max(title[2], name[2]))
    box = (column[0], title[3], column[1], name[1])
    annots = [user_to_view(r, page.visible, page.rotate) for r in _annotation_obstacles(page)]
    return SignerGap(
        page.index,
        page.rotate,
        page.visible,
        box,
        (name[0] + name[2]) / 2,
        tuple([b for b, _t in lines] + annots),
    )


def place_in_gap(gap: SignerGap, width: float, height: float) -> Placement | None:
    """A ``width`` × ``height`` box (points, as the reader sees it) centred in ``gap``'s
    height and on its name line, or ``None`` when it does not fit the gap (with
    :data:`GAP`/2 clear of the title and the name) or would touch other text or a widget."""
    _u1, v1, _u2, v2 = gap.box
    if height > v2 - v1 - GAP:
        return None
    cv = (v1 + v2) / 2
    bu = gap.centre - width / 2
    view_w = _height(gap.visible) if gap.rotate in (90, 270) else _width(gap.visible)
    if bu < 0 or bu + width > view_w:
        return None
    box = (bu, cv - height / 2, bu + width, cv + height / 2)
    for o in gap.obstacles:
        # Only the page's other text and widgets: the title and name are outside by height.
        if _intersect(box, o) is not None:
            return None
    user = view_to_user(box, gap.visible, gap.rotate)
    return Placement(gap.page_index, _rounded(user), None, gap.rotate)


class _Grid:
    """Occupancy of the view space in square cells of ``cell`` points, one Python int per row
    (bit c set: cell c holds an obstacle). Obstacles are rasterised outwards, so a box on free
    cells never touches one; finding every free position of a w × h box is a few bitwise
    operations per row (bounded: at most :data:`MAX_CELLS` cells)."""

    def __init__(self, width: float, height: float, obstacles: list[Rect]) -> None:
        self.width, self.height = width, height
        self.cell = max(
            CELL,
            math.sqrt(width * height / MAX_CELLS),
            width / MAX_SIDE_CELLS,
            height / MAX_SIDE_CELLS,
        )
        self.cols = max(1, int(width / self.cell))
        self.rows_n = max(1, int(height / self.cell))
        rows = [0] * self.rows_n
        for u1, v1, u2, v2 in obstacles:
            c1 = max(0, math.floor((u1 - GAP) / self.cell))
            c2 = min(self.cols, math.ceil((u2 + GAP) / self.cell))
            r1 = max(0, math.floor((v1 - GAP) / self.cell))
            r2 = min(self.rows_n, math.ceil((v2 + GAP) / self.cell))
            if c2 <= c1 or r2 <= r1:
                continue
            mask = ((1 << (c2 - c1)) - 1) << c1
            for r in range(r1, r2):
                rows[r] |= mask
        self.rows = rows

    def free_starts(self, w: float, h: float, margin: float) -> list[tuple[int, int]] | None:
        """Per row r (top-left cell row of the box): the bitmask of columns where a w × h box
        fits on free cells inside the margins; ``None`` when it cannot fit at all."""
        starts = self.free_rows(w, h, margin)
        return None if starts is None else list(starts.from_row(0))

    def free_rows(self, w: float, h: float, margin: float) -> _FreeRows | None:
        """:meth:`free_starts` computed row by row as they are read (:class:`_FreeRows`):
        placement stops at the first row that fits, usually near where it starts looking,
        instead of masking every row of the page (~0.03 ms of each visible signature, ``python
        -m bench.run --appearance-only``)."""
        s = self.cell
        wc, hc = math.ceil(w / s), math.ceil(h / s)
        c_lo, c_hi = math.ceil(margin / s), math.floor((self.width - margin) / s) - wc
        r_lo, r_hi = math.ceil(margin / s), math.floor((self.height - margin) / s) - hc
        if c_hi < c_lo or r_hi < r_lo or wc < 1 or hc < 1:
            return None
        allowed = ((1 << (c_hi - c_lo + 1)) - 1) << c_lo
        # Horizontal: bit c blocked when any of cells c .. c+wc-1 is occupied (doubling). Most
        # rows are empty or repeat the row above (a text line spans several rows): each
        # distinct row is widened once.
        widened: dict[int, int] = {0: 0}
        rows = []
        for row in self.rows:
            acc = widened.get(row)
            if acc is None:
                acc, span = row, 1
                while span < wc:
                    shift = min(span, wc - span)
                    acc |= acc >> shift
                    span += shift
                widened[row] = acc
            rows.append(acc)
        blocked = _window_or(rows, hc)
        return _FreeRows(range(r_lo, min(r_hi, len(blocked) - 1) + 1), blocked, allowed)


class _FreeRows:
    """The free-column bitmask of each row in ``rows`` (``~blocked[r] & allowed``), computed
    when read. Falsy when there is no row."""

    def __init__(self, rows: range, blocked: list[int], allowed: int) -> None:
        self.rows, self.blocked, self.allowed = rows, blocked, allowed

    def __bool__(self) -> bool:
        return len(self.rows) > 0

    def from_row(self, first: int) -> Iterator[tuple[int, int]]:
        """``(r, mask)`` for the rows from ``first`` on, top to bottom."""
        blocked, allowed = self.blocked, self.allowed
        for r in self.rows[max(0, first - self.rows.start) :]:
            yield r, ~blocked[r] & allowed


def _window_or(rows: list[int], k: int) -> list[int]:
    """``[rows[r] | rows[r+1] | … | rows[r+k-1] for r in range(len(rows) - k + 1)]`` in three
    passes whatever ``k`` (van Herk / Gil-Werman: in blocks of ``k`` rows, the OR from a row
    to its block's end and from its block's start to a row; a window spans at most two blocks
    and is the first of one and the second of the other). The doubling it replaced took
    log2(k) passes over every row: ~0.2 ms of an A4 page, each visible signature."""
    n = len(rows)
    if k <= 1:
        return list(rows)
    if k > n:
        return []
    padded = rows + [0] * (-n % k)
    to_end: list[int] = []
    from_start: list[int] = []
    for i in range(0, len(padded), k):
        block = padded[i : i + k]
        from_start.extend(accumulate(block, or_))
        to_end.extend(reversed(list(accumulate(reversed(block), or_))))
    return [to_end[r] | from_start[r + k - 1] for r in range(n - k + 1)]


def _nearest_bit(mask: int, target: int) -> int:
    below = mask & ((1 << (target + 1)) - 1) if target >= 0 else 0
    above = mask >> max(target, 0)
    best_below = below.bit_length() - 1 if below else None
    best_above = (above & -above).bit_length() - 1 + max(target, 0) if above else None
    if best_below is None:
        assert best_above is not None
        return best_above
    if best_above is None:
        return best_below
    return best_below if target - best_below <= best_above - target else best_above


def _place_on_page(
    page: _Page,
    obstacles_view: list[Rect],
    lines_view: list[Rect],
    *,
    width: float,
    height: float,
    region: Region,
    margin: float,
    above_text: bool = False,
) -> Rect | None:
    """A free view-space box of ``width`` × ``height`` on the page by ``region``, or None.
    ``above_text`` (``top-right`` only): the box must end above the highest text line of the
    right half (the top margin above the national motto)."""
    view_w, view_h = page.view_size
    margin = min(margin, 0.05 * min(view_w, view_h))
    grid = _Grid(view_w, view_h, obstacles_view)
    starts = grid.free_rows(width, height, margin)
    if not starts:
        return None
    s = grid.cell
    # The box in the right half of the page (the motto's and the signer block's column, Nghị
    # định 30/2020 Appendix I), or, when wider than that half, its centre in it.
    if width <= view_w / 2 - margin:
        c_right = math.ceil(view_w / 2 / s)
    else:
        c_right = max(0, math.ceil((view_w / 2 - width / 2) / s))
    right_half = ~((1 << c_right) - 1)
    if region == "top-left":
        # The mirror of top-right (the QR code, signing/qr.py): the box inside the left half,
        # the topmost free row, the leftmost place in it.
        c_last = math.floor((view_w / 2 - width) / s)
        if c_last < 0:
            return None
        left_half = (1 << (c_last + 1)) - 1
        for r, free in starts.from_row(0):
            free &= left_half
            if free:
                c = (free & -free).bit_length() - 1  # the leftmost
                return (c * s, r * s, c * s + width, r * s + height)
        return None
    if region == "top-right":
        limit = None
        if above_text:
            limit = min((v1 for u1, v1, u2, _v2 in lines_view if u2 > view_w / 2), default=view_h)
        for r, free in starts.from_row(0):
            if limit is not None and r * s + height > limit:
                return None
            free &= right_half
            if free:
                c = free.bit_length() - 1  # the rightmost
                return (c * s, r * s, c * s + width, r * s + height)
        return None
    # signature-block: the first free row below the body text, centred on the right half.
    body_bottom = max(
        (
            v2
            for u1, _v1, u2, v2 in lines_view
            if u1 < view_w / 2 < u2 and u2 - u1 >= BODY_LINE_SHARE * view_w
        ),
        default=None,
    )
    tops = [0.0]
    if body_bottom is not None:
        tops = [body_bottom]
    else:
        # No full-width body line (a short notice, a form): below the lowest text other than
        # a footer (a page number in the bottom band), so the stamp still ends the document
        # rather than sitting beside the motto; when that leaves no room, anywhere as before.
        lowest = max(
            (v2 for _u1, v1, _u2, v2 in lines_view if v1 < (1 - FOOTER_SHARE) * view_h),
            default=None,
        )
        if lowest is not None:
            tops = [lowest, 0.0]
    target = round((0.75 * view_w - width / 2) / s)
    for top in tops:
        first_row = math.ceil((top + GAP) / s)
        for r, free in starts.from_row(first_row):
            free &= right_half
            if free:
                c = _nearest_bit(free, target)
                return (c * s, r * s, c * s + width, r * s + height)
    return None


def free_top_left(
    reader: PdfFileReader, size: float, margin: float, texts: PageTexts | None = None
) -> tuple[float, float] | None:
    """Where a ``size`` × ``size`` square (points, as the reader sees it) goes at the top
    left of page 1 clear of its text and annotations (the QR code, signing/qr.py): its
    top-left corner's distance ``(right, down)`` from the visible page's displayed top-left
    corner, at least ``margin`` from the edges, in the left half, the topmost free row and
    the leftmost place in it; ``None`` when no such place exists on page 1. ``texts``: the
    page texts of this signature (:class:`PageTexts`), shared with the stamp's placement.
    Errors: ``PlacementError("PAGE_LAYOUT_UNAVAILABLE")`` (:func:`text_lines`)."""
    pages = list(_pages(reader))
    if not pages:
        return None
    page = pages[0]
    measured = texts if texts is not None else PageTexts(reader)
    lines = [user_to_view(r, page.visible, page.rotate) for r in measured.lines(page)]
    annots = [user_to_view(r, page.visible, page.rotate) for r in _annotation_obstacles(page)]
    found = _place_on_page(
        page, lines + annots, lines, width=size, height=size, region="top-left", margin=margin
    )
    return None if found is None else (found[0], found[1])


def _field_widget(field: generic.DictionaryObject) -> tuple[Any, generic.DictionaryObject]:
    """The (raw reference, dictionary) of a signature field's first widget."""
    if "/Rect" in field or "/Kids" not in field:
        return None, field
    kids = field["/Kids"]
    return kids.raw_get(0), kids[0]


def _widget_page(
    reader: PdfFileReader, widget_ref: Any, widget: generic.DictionaryObject
) -> _Page | None:
    page_ref = _ref(widget.raw_get("/P")) if "/P" in widget else None
    target = _ref(widget_ref)
    for page in _pages(reader):
        if page_ref is not None and page.ref == page_ref:
            return page
        annots = _get(page.obj, "/Annots")
        if (
            target is not None
            and isinstance(annots, generic.ArrayObject)
            and any(_ref(annots.raw_get(i)) == target for i in range(len(annots)))
        ):
            return page
    return None


def _signature_fields(
    reader: PdfFileReader,
) -> Iterator[tuple[str, Any, Any, generic.DictionaryObject]]:
    """(name, value, field reference, field) of every signature field."""
    from pyhanko.sign.fields import enumerate_sig_fields

    for name, value, field_ref in enumerate_sig_fields(reader):
        yield name, value, field_ref, field_ref.get_object()


# A prepared field a visible stamp goes into must be seen (red team issue 10, F5: off the
# page, hidden, or ±1e6 wide answered 201 with a stamp nobody sees): not Hidden/NoView
# (ISO 32000-1 Table 165, /F bits 2 and 6), on a page, at least this many points on each side
# (6.35 mm: below, the stamp's text is unreadable even at MIN_SCALE), and at most this share
# of it outside the visible page (CropBox ∩ MediaBox).
MIN_FIELD_SIDE = 18.0
MAX_FIELD_CLIPPED = 0.1
_HIDDEN_FLAGS = 0b10 | 0b100000


def _not_visible(
    reader: PdfFileReader, widget_ref: Any, widget: generic.DictionaryObject
) -> str | None:
    """Why a visible stamp in this widget would not be seen, ``None`` when it would."""
    flags = _get(widget, "/F", 0)
    if isinstance(flags, int) and flags & _HIDDEN_FLAGS:
        return "hidden"
    rect = _widget_rect(widget)
    if rect is None:
        return "no size"
    if min(_width(rect), _height(rect)) < MIN_FIELD_SIDE:
        return "too small"
    page = _widget_page(reader, widget_ref, widget)
    if page is None:
        return "on no page"
    seen = _intersect(rect, page.visible)
    if seen is None:
        return "off the page"
    keep = 1.0 - MAX_FIELD_CLIPPED
    if _width(seen) < keep * _width(rect) or _height(seen) < keep * _height(rect):
        return "off the page"
    return None


def prepared_field(
    reader: PdfFileReader, field_name: str | None, *, visible: bool = False
) -> Placement | None:
    """The prepared empty signature field to fill: ``field_name`` (errors
    SIGNATURE_FIELD_NOT_FOUND, SIGNATURE_FIELD_ALREADY_SIGNED), else the document's only empty
    signature field with a visible widget, else None. The placement's box is the widget's
    ``/Rect`` (an invisible named field gives a zero box).

    ``visible`` (a visible stamp is asked): a named field the stamp would not be seen in (see
    :data:`MIN_FIELD_SIDE`) is SIGNATURE_FIELD_NOT_VISIBLE; an unnamed one is not chosen."""
    candidates = []
    for name, value, field_ref, field in _signature_fields(reader):
        if field_name is not None and name != field_name:
            continue
        if field_name is not None and value is not None:
            raise PlacementError("SIGNATURE_FIELD_ALREADY_SIGNED", field_name)
        if value is not None:
            continue
        widget_ref, widget = _field_widget(field)
        rect = _widget_rect(widget)
        if field_name is None and rect is None:
            continue  # an invisible empty field is filled only when named
        if visible:
            reason = _not_visible(
                reader, widget_ref if widget_ref is not None else field_ref, widget
            )
            if reason is not None and field_name is not None:
                raise PlacementError("SIGNATURE_FIELD_NOT_VISIBLE", field_name)
            if reason is not None:
                continue
        candidates.append((name, widget_ref if widget_ref is not None else field_ref, widget))
    if field_name is not None and not candidates:
        raise PlacementError("SIGNATURE_FIELD_NOT_FOUND", field_name)
    if len(candidates) != 1:
        return None
    name, widget_ref, widget = candidates[0]
    page = _widget_page(reader, widget_ref, widget)
    rect = _rect(_get(widget, "/Rect")) or (0.0, 0.0, 0.0, 0.0)
    return Placement(
        page_index=page.index if page else 0,
        box=rect,
        existing_field=name,
        rotate=page.rotate if page else 0,
    )


def _over_signature(reader: PdfFileReader, name: str, width: float, height: float) -> Placement:
    for field_name, _value, field_ref, field in _signature_fields(reader):
        if field_name != name:
            continue
        widget_ref, widget = _field_widget(field)
        rect = _widget_rect(widget)
        page = _widget_page(reader, widget_ref if widget_ref is not None else field_ref, widget)
        if rect is None or page is None:
            break
        view_w, view_h = page.view_size
        u1, v1, u2, v2 = user_to_view(rect, page.visible, page.rotate)
        scale = min(1.0, view_w / width, view_h / height)
        w, h = width * scale, height * scale
        # The seal's centre on the centre of the signature's left third.
        cu, cv = u1 + (u2 - u1) / 6, (v1 + v2) / 2
        bu = min(max(cu - w / 2, 0.0), view_w - w)
        bv = min(max(cv - h / 2, 0.0), view_h - h)
        box = view_to_user((bu, bv, bu + w, bv + h), page.visible, page.rotate)
        return Placement(page.index, _rounded(box), None, page.rotate)
    raise PlacementError("SIGNATURE_FIELD_NOT_FOUND", name)


def _rounded(box: Rect) -> Rect:
    # Inwards to 1/100 pt: the box never grows past what was checked.
    return (
        math.ceil(box[0] * 100) / 100,
        math.ceil(box[1] * 100) / 100,
        math.floor(box[2] * 100) / 100,
        math.floor(box[3] * 100) / 100,
    )


def place(
    reader: PdfFileReader,
    *,
    width: float,
    height: float,
    region: Region,
    field_name: str | None = None,
    over_signature: str | None = None,
    when_full: WhenFull = "shrink",
    margin: float = 24.0,
    top_margin: float | None = None,
    texts: PageTexts | None = None,
) -> Placement:
    """Where to put a signature of ``width`` × ``height`` points (as the reader sees it) in
    the document read by ``reader`` (the rules are in the module docstring).

    ``margin``: distance kept from the visible page's edges (points; at most 5% of the page's
    smaller side). ``top_margin`` (``top-right`` only): first try the top margin of page 1
    above the right half's text (the national motto), this close to the page's edges
    (points), at full size or :data:`TOP_BAND_SCALES`; only when that fails the rule as
    before (Nghị định 30/2020 Appendix I: the copy block top right of page 1, not beside a
    body line). ``texts``: the page texts already measured for this signature
    (:class:`PageTexts`, e.g. by :func:`signer_gap`), else measured here. The returned box is
    in the page's default user space; on a page with ``/Rotate`` 90 or 270 it is ``height``
    wide and ``width`` tall, and the appearance must be turned by ``Placement.rotate``
    (:func:`upright`). With ``shrink`` the box may be smaller
    than asked (same proportions, at least :data:`MIN_SCALE`).
    Errors: :class:`PlacementError` (codes in its docstring); a page tree without pages is
    ``ValueError``, and other malformed structures raise pyHanko's errors, all of which the
    engine maps to MALFORMED_PDF.
    """
    if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise ValueError("width and height must be positive")
    prepared = prepared_field(reader, field_name, visible=True)
    if prepared is not None:
        return prepared
    if over_signature is not None:
        return _over_signature(reader, over_signature, width, height)
    pages = list(_pages(reader))
    if not pages:
        # A malformed document, not a full one (the engine maps ValueError to MALFORMED_PDF).
        raise ValueError("the page tree has no pages")
    if region == "signature-block":
        order = [pages[-1]]
    else:
        order = pages if when_full == "next-page" else pages[:1]
    scales = SHRINK_STEPS if when_full == "shrink" else (1.0,)
    measured = texts if texts is not None else PageTexts(reader)
    # One request's text layout is bounded in pages and time, whatever the document: the
    # worker is shared by every agency (red team, issue 10).
    order = order[:MAX_LAYOUT_PAGES]
    deadline = time.monotonic() + LAYOUT_BUDGET_SECONDS

    def lines_of(page: _Page) -> list[Rect]:
        if not measured.measured(page) and time.monotonic() > deadline:
            raise PlacementError(
                "PAGE_LAYOUT_UNAVAILABLE", f"over {LAYOUT_BUDGET_SECONDS:g} s of text layout"
            )
        return measured.lines(page)

    def try_page(
        page: _Page, sizes: tuple[float, ...], edge: float, above_text: bool = False
    ) -> Placement | None:
        """The first free box on ``page`` at one of the ``sizes`` (scales), else None."""
        lines = [user_to_view(r, page.visible, page.rotate) for r in lines_of(page)]
        annots = [user_to_view(r, page.visible, page.rotate) for r in _annotation_obstacles(page)]
        for scale in sizes:
            found = _place_on_page(
                page,
                lines + annots,
                lines,
                width=width * scale,
                height=height * scale,
                region=region,
                margin=edge,
                above_text=above_text,
            )
            if found is not None:
                box = view_to_user(found, page.visible, page.rotate)
                return Placement(page.index, _rounded(box), None, page.rotate)
        return None

    if region == "top-right" and top_margin is not None:
        band = TOP_BAND_SCALES if when_full == "shrink" else (1.0,)
        found_in_band = try_page(pages[0], band, top_margin, above_text=True)
        if found_in_band is not None:
            return found_in_band
    for page in order:
        found_on_page = try_page(page, scales, margin)
        if found_on_page is not None:
            return found_on_page
    raise PlacementError("NO_SPACE_FOR_SIGNATURE", f"{width:g}x{height:g} {region} {when_full}")


def _turned_create_stamp(self: Any, writer: Any, box: BoxConstraints, text_params: dict) -> Any:
    if self.rotate in (90, 270):
        box = BoxConstraints(width=box.height, height=box.width)
    stamp = self.inner.create_stamp(writer, box, text_params)
    return None if stamp is None else _TurnedStamp(stamp, self.rotate)


@dataclass(frozen=True)
class _Upright(BaseStampStyle):
    """A stamp style whose appearance is drawn ``rotate`` degrees counter-clockwise in the
    widget, so that it reads upright on a page displayed turned ``rotate`` degrees clockwise.

    pyHanko builds the appearance for the widget's ``/Rect`` as stored (user space) and has no
    notion of ``/Rotate`` (``VisibleSigSettings.rotate_with_page`` only sets or clears the
    NoRotate flag, which viewers apply about the widget's corner, off the page). The form
    XObject's ``/Matrix`` turns it instead (ISO 32000-1 §12.5.5: the transformed ``/BBox`` is
    fitted to the ``/Rect``)."""

    inner: BaseStampStyle | None = None
    rotate: int = 0
    create_stamp = _turned_create_stamp


@dataclass(frozen=True)
class _UprightText(TextStampStyle):
    """:class:`_Upright` for a text stamp: still a ``TextStampStyle``, so that pyHanko passes
    it the signing time (``%(ts)s``, in the inner style's ``timestamp_format``)."""

    inner: BaseStampStyle | None = None
    rotate: int = 0
    create_stamp = _turned_create_stamp


class _TurnedStamp:
    def __init__(self, stamp: Any, rotate: int) -> None:
        self.stamp, self.rotate = stamp, rotate

    def apply_appearance(self, annot_dict: generic.DictionaryObject) -> None:
        ref = self.stamp.register()
        cos, sin = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[self.rotate]
        ref.get_object()["/Matrix"] = generic.ArrayObject(
            generic.NumberObject(v) for v in (cos, sin, -sin, cos, 0, 0)
        )
        self.stamp.apply_appearance(annot_dict)


def upright(style: BaseStampStyle, rotate: int) -> BaseStampStyle:
    """``style`` drawn upright on a page with ``/Rotate`` ``rotate`` (0: ``style`` itself)."""
    if rotate % 360 == 0:
        return style
    if isinstance(style, TextStampStyle):
        return _UprightText(
            inner=style, rotate=rotate % 360, timestamp_format=style.timestamp_format
        )
    return _Upright(inner=style, rotate=rotate % 360)
