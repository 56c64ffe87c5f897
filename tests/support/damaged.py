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


DAMAGES = {
    "startxref-off-by-7": startxref_off,
    "startxref-off-by-minus-40": lambda pdf: startxref_off(pdf, -40),
    "shifted-offsets": shifted_offsets,
    "missing-xref": missing_xref,
    "prefix-before-header": prefix_before_header,
}
