"""A faster reader for PDF hexadecimal strings, installed into pyHanko's parser.

pyHanko 0.38 reads a hex string one byte at a time through a Python generator
(``generic.read_hex_string_from_stream``). A signature's ``/Contents`` is a hex string of 8–30 KB,
so reading the signature dictionaries of a 25-signature PDF spent ~0.4 s — half of its whole
verification — in that loop (``bench/RESULTS.md``, "verification"). This replacement reads up to
the closing ``>`` in one call and decodes with ``binascii``; it has the same semantics (PDF
whitespace ignored, an odd final digit padded with ``0``, any other byte an error), and falls
back to pyHanko's own reader for the rare hex string that contains a comment (``%``), which the
original skips. ``tests/test_pdf_speedups.py`` compares both on valid and invalid inputs.
"""

from __future__ import annotations

import binascii
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PDF_WHITESPACE, PdfStreamError

_original = generic.read_hex_string_from_stream
_HEX = b"0123456789abcdefABCDEF"
_CHUNK = 64 * 1024


def read_hex_string_from_stream(stream: Any) -> generic.ByteStringObject | generic.TextStringObject:
    """Read ``<…>`` at the stream's position into a PDF string object (as pyHanko does).

    Raises :class:`PdfStreamError` on a non-hex byte or a stream that ends before ``>``.
    """
    start = stream.tell()
    stream.read(1)  # "<"
    parts: list[bytes] = []
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            raise PdfStreamError("Stream ended prematurely")
        end = chunk.find(b">")
        if end >= 0:
            parts.append(chunk[:end])
            stream.seek(end + 1 - len(chunk), 1)
            break
        parts.append(chunk)
    raw = b"".join(parts)
    if b"%" in raw:
        stream.seek(start)
        return _original(stream)
    digits = raw.translate(None, PDF_WHITESPACE)
    bad = digits.translate(None, _HEX)
    if bad:
        raise PdfStreamError("Unexpected token in hex string: " + repr(bad[:1]))
    if len(digits) % 2:
        digits += b"0"
    return generic.pdf_string(binascii.unhexlify(digits))


def install() -> None:
    """Make pyHanko's object reader use :func:`read_hex_string_from_stream` (idempotent)."""
    generic.read_hex_string_from_stream = read_hex_string_from_stream  # type: ignore[assignment]


def original_read_hex_string_from_stream(
    stream: Any,
) -> generic.ByteStringObject | generic.TextStringObject:
    """pyHanko's own implementation (for comparison in tests)."""
    return _original(stream)
