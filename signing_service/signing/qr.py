"""A QR code (ISO/IEC 18004) at the top left of page 1, added in the signing revision.

Thông tư 01/2023/TT-VPCP has results of administrative procedures carry a QR code with the
dossier code, the procedure code, the document's name, the issuing system, the time of issue
and a link where the document can be checked. The code is drawn as vector rectangles straight
into page 1's content (no image, no font, no resource to name: nothing that could collide with
the page's own resources or break PDF/A), in the same incremental update as the signature, so
the signature covers it. Adding page content *after* a signature would be a modification that
invalidates it (ISO 32000-1 §12.8.2.2; DocMDP), hence :class:`QrOnSignedDocument`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from decimal import Decimal

import segno
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from signing_service.signing.placement import free_top_left

log = logging.getLogger(__name__)

# 5 mm from the visible page's top and left edges, 18 to 25 mm square: inside Nghị định
# 30/2020's left margin (30-35 mm), so beside the agency name block, not over it. Within those
# bounds a module is at least 0.25 mm where the payload allows (a phone reads a printed
# module of 0.25 mm reliably; below 0.2 mm it struggles): 18 mm up to 72 modules, 25 mm
# (0.24 mm modules) for the longest payloads (version 20 with the quiet zone, a 255-character
# document name).
MM = 72 / 25.4
QR_MIN_SIZE = 18 * MM
QR_MAX_SIZE = 25 * MM
MODULE_SIZE = 0.25 * MM
QR_OFFSET = 5 * MM
# ISO/IEC 18004 §7.3.7: a quiet zone of 4 modules on every side, drawn white so the page's
# own content behind it cannot touch the symbol.
QUIET_ZONE = 4
# Error correction M (15 %): a printed copy with a crease or a stamp's edge still decodes.
ERROR_LEVEL = "m"


class QrOnSignedDocument(Exception):
    """The document already carries a signature: new page content would invalidate it."""


@dataclass(frozen=True)
class QrContent:
    """What the QR code carries (Thông tư 01/2023/TT-VPCP), each as text; ``None``: absent.
    ``applicant_id``: the applicant's identifier (personal or enterprise number).

    ``issued_at``: ISO 8601 with offset, the signature's claimed signing time; ``link``: the
    verification link (the service's public base URL and the document's id).
    """

    dossier_code: str | None
    procedure_code: str | None
    document_name: str | None
    issuing_system: str
    issued_at: str
    link: str
    applicant_id: str | None = None

    def payload(self) -> str:
        """The encoded text: a compact JSON object (UTF-8) with Vietnamese keys, absent values
        left out; a scanner app shows it as is and a program reads it with any JSON parser."""
        fields = {
            "ma_ho_so": self.dossier_code,
            "ma_thu_tuc": self.procedure_code,
            "ma_dinh_danh": self.applicant_id,
            "ten_van_ban": self.document_name,
            "he_thong": self.issuing_system,
            "thoi_gian": self.issued_at,
            "lien_ket": self.link,
        }
        return json.dumps(
            {k: v for k, v in fields.items() if v is not None},
            ensure_ascii=False,
            separators=(",", ":"),
        )


def _number(value: float) -> str:
    return format(Decimal(repr(value)).quantize(Decimal("0.001")).normalize(), "f")


def _inherited(page: generic.DictionaryObject, key: str) -> object | None:
    node: object | None = page
    for _ in range(64):  # a page tree deeper than this is not one a viewer draws either
        if not isinstance(node, generic.DictionaryObject):
            return None
        if key in node:
            return node[key]
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
    return None


def _box(value: object | None) -> tuple[float, float, float, float] | None:
    if not isinstance(value, generic.ArrayObject) or len(value) != 4:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def visible_box(page: generic.DictionaryObject) -> tuple[float, float, float, float]:
    """The page's visible area in user space: the CropBox clipped to the MediaBox, both
    possibly inherited from the page tree (ISO 32000-1 §14.11.2, Table 30); A4 when
    neither can be read."""
    media = _box(_inherited(page, "/MediaBox")) or (0.0, 0.0, 595.0, 842.0)
    crop = _box(_inherited(page, "/CropBox")) or media
    x0, y0 = max(media[0], crop[0]), max(media[1], crop[1])
    x1, y1 = min(media[2], crop[2]), min(media[3], crop[3])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else media


def _placement(
    box: tuple[float, float, float, float],
    rotate: int,
    size: float,
    offset: float | tuple[float, float],
) -> tuple[float, float, float, float, float, float]:
    """The matrix mapping the symbol's square [0, size]² (upright as the reader sees it) to
    user space so that its top-left corner sits ``offset`` (right, down; one number: both)
    from the *displayed* top-left corner of ``box``, whatever the page's /Rotate (clockwise,
    multiples of 90)."""
    x0, y0, x1, y1 = box
    du, dv = (offset, offset) if isinstance(offset, int | float) else offset
    if rotate == 90:  # displayed top-left is user (x0, y0); right = +y, down = +x
        return 0, 1, -1, 0, x0 + dv + size, y0 + du
    if rotate == 180:  # (x1, y0); right = -x, down = +y
        return -1, 0, 0, -1, x1 - du, y0 + dv + size
    if rotate == 270:  # (x1, y1); right = -y, down = -x
        return 0, -1, 1, 0, x1 - dv - size, y1 - du
    return 1, 0, 0, 1, x0 + du, y1 - dv - size


def qr_size(payload: str) -> float:
    """The symbol's side in points for ``payload`` (quiet zone included): 0.25 mm modules,
    within :data:`QR_MIN_SIZE` .. :data:`QR_MAX_SIZE`."""
    code = segno.make(payload, error=ERROR_LEVEL, micro=False, boost_error=False)
    modules = code.symbol_size(border=QUIET_ZONE)[0]
    return float(min(max(modules * MODULE_SIZE, QR_MIN_SIZE), QR_MAX_SIZE))


def qr_content_stream(
    payload: str,
    box: tuple[float, float, float, float],
    rotate: int = 0,
    *,
    offset: float | tuple[float, float] = QR_OFFSET,
) -> bytes:
    """Page content drawing ``payload`` as a QR code (segno: ISO/IEC 18004, byte mode UTF-8,
    error correction M, the smallest version that holds it): a white square with the quiet
    zone, then one rectangle per run of dark modules in a row. Units: PDF points; the side is
    :data:`QR_MIN_SIZE` to :data:`QR_MAX_SIZE` (see there)."""
    code = segno.make(payload, error=ERROR_LEVEL, micro=False, boost_error=False)
    rows = [list(row) for row in code.matrix]
    modules = len(rows) + 2 * QUIET_ZONE
    size = qr_size(payload)
    scale = size / modules
    a, b, c, d, e, f = _placement(box, rotate % 360, size, offset)
    ops = [
        "q",
        " ".join(_number(v) for v in (a, b, c, d, e, f)) + " cm",
        f"{_number(scale)} 0 0 {_number(scale)} 0 0 cm",
        f"1 g 0 0 {modules} {modules} re f 0 g",
    ]
    for r, row in enumerate(rows):
        y = modules - QUIET_ZONE - r - 1  # the matrix's first row is the top one
        x = 0
        while x < len(row):
            if not row[x]:
                x += 1
                continue
            start = x
            while x < len(row) and row[x]:
                x += 1
            ops.append(f"{start + QUIET_ZONE} {y} {x - start} 1 re")
    ops += ["f", "Q"]
    return "\n".join(ops).encode("ascii")


def add_qr(writer: IncrementalPdfFileWriter, content: QrContent) -> None:
    """Draw ``content``'s QR code at the top left of page 1 in ``writer``'s pending update.

    The page's existing content is wrapped in ``q … Q`` first (an unbalanced graphics state
    left by it would otherwise move or scale the symbol). Raises :class:`QrOnSignedDocument`
    when the document already has a signature or document timestamp.
    """
    if writer.prev.embedded_signatures:
        raise QrOnSignedDocument()
    page_ref, _resources = writer.find_page_for_modification(0)
    page = page_ref.get_object()
    rotate = _inherited(page, "/Rotate")
    try:
        degrees = int(rotate) if rotate is not None else 0  # type: ignore[call-overload]
    except (TypeError, ValueError):
        degrees = 0
    payload = content.payload()
    # Clear of the page's text and annotations, as the stamps are (signing/placement.py):
    # the topmost free place in the left half, 5 mm from the edges at least. On a page with
    # no such place (text everywhere in the left half) the fixed corner, as before: the QR
    # code is asked for, and a corner overlapping some text still decodes (level M).
    spot = free_top_left(writer.prev, qr_size(payload), QR_OFFSET)
    if spot is None:
        log.warning("page 1: no free place at the top left for the QR code; corner used")
    offset = spot if spot is not None else QR_OFFSET
    stream = qr_content_stream(payload, visible_box(page), degrees, offset=offset)

    def add(data: bytes) -> generic.IndirectObject:
        return writer.add_object(generic.StreamObject(stream_data=data))

    if "/Contents" not in page:  # an empty page
        page[generic.NameObject("/Contents")] = add(stream)
        writer.mark_update(page_ref)
        return
    writer.add_stream_to_page(0, add(b"q\n"), prepend=True)
    writer.add_stream_to_page(0, add(b"\nQ\n" + stream))
