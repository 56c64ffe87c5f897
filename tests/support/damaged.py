"""Damaged PDFs of the kinds viewers open anyway (issue 10, "The PDFs people have"): each built
from a clean file (``tests/support/pdfs.make_pdf``) with a classic cross-reference table."""

from __future__ import annotations

import re

_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF\s*$")


def _startxref(pdf: bytes) -> re.Match[bytes]:
    match = _STARTXREF.search(pdf)
    assert match is not None, "no startxref at the end"
    return match


def startxref_off(pdf: bytes, delta: int = 7) -> bytes:
    """``startxref`` points ``delta`` bytes away from the ``xref`` keyword."""
    match = _startxref(pdf)
    wrong = int(match.group(1)) + delta
    return pdf[: match.start(1)] + str(wrong).encode() + pdf[match.end(1) :]


def shifted_offsets(pdf: bytes, extra: bytes = b"% inserted by a careless tool\n") -> bytes:
    """Bytes inserted after the header: every offset of the table (and startxref) is off."""
    second_line = pdf.index(b"\n", pdf.index(b"%PDF-")) + 1
    return pdf[:second_line] + extra + pdf[second_line:]


def missing_xref(pdf: bytes) -> bytes:
    """No cross-reference table: the ``xref`` section is gone, the trailer stays and
    ``startxref`` points where the table was."""
    start = pdf.rindex(b"\nxref") + 1
    trailer = pdf.index(b"trailer", start)
    return pdf[:start] + pdf[trailer:]


def prefix_before_header(pdf: bytes, junk: bytes = b"\x00JUNK-PREFIX-16\n") -> bytes:
    """Bytes before ``%PDF-`` (a mail gateway's or an upload form's leftovers)."""
    return junk + pdf


def shadowed(
    approved: bytes = b"DA DUYET 1.000.000.000", refused: bytes = b"KHONG DUYET 1.000.000"
) -> bytes:
    """The red team's shape (issue 10, F7): the page's content object defined twice, the table
    pointing at the first (``refused``), the second (``approved``) after the trailer, and
    ``startxref`` 3 bytes off: pyHanko finds the table nearby and reads ``refused``; poppler,
    PDFium and qpdf rebuild by scanning and read ``approved``."""

    def stream(text: bytes) -> bytes:
        body = b"BT /F1 14 Tf 72 700 Td (" + text + b") Tj ET"
        return b"<</Length %d>>stream\n" % len(body) + body + b"\nendstream"

    objects = [
        (1, b"<</Type/Catalog/Pages 2 0 R>>"),
        (2, b"<</Type/Pages/Kids[3 0 R]/Count 1>>"),
        (
            3,
            b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]"
            b"/Resources<</Font<</F1 4 0 R>>>>/Contents 5 0 R>>",
        ),
        (4, b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>"),
        (5, stream(refused)),
    ]
    out = b"%PDF-1.7\n"
    offsets = {}
    for number, body in objects:
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    table = len(out)
    out += b"xref\n0 6\n0000000000 65535 f \n"
    out += b"".join(b"%010d 00000 n \n" % offsets[n] for n in range(1, 6))
    out += b"trailer<</Size 6/Root 1 0 R>>\n"
    out += b"5 0 obj\n" + stream(approved) + b"\nendobj\n"
    return out + b"startxref\n%d\n%%%%EOF\n" % (table + 3)


def object_offset_off(pdf: bytes, delta: int = 2) -> bytes:
    """The first in-use entry of the (last) table points ``delta`` bytes past its object."""
    start = pdf.rindex(b"\nxref") + 1
    entry = re.compile(rb"(\d{10}) (\d{5}) n").search(pdf, start)
    assert entry is not None
    wrong = b"%010d" % (int(entry.group(1)) + delta)
    return pdf[: entry.start(1)] + wrong + pdf[entry.end(1) :]


DAMAGES = {
    "startxref-off-by-3": lambda pdf: startxref_off(pdf, 3),
    "object-offset-off-by-2": object_offset_off,
    "startxref-off-by-7": startxref_off,
    "startxref-off-by-minus-40": lambda pdf: startxref_off(pdf, -40),
    "shifted-offsets": shifted_offsets,
    "missing-xref": missing_xref,
    "prefix-before-header": prefix_before_header,
}
