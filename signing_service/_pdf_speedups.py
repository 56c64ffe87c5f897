"""A faster reader for PDF hexadecimal strings and a faster writer for PDF names, installed
into pyHanko's parser and serialiser.

pyHanko 0.38 reads a hex string one byte at a time through a Python generator
(``generic.read_hex_string_from_stream``). A signature's ``/Contents`` is a hex string of 8–30 KB,
so reading the signature dictionaries of a 25-signature PDF spent ~0.4 s — half of its whole
verification — in that loop (``bench/RESULTS.md``, "verification"). This replacement reads up to
the closing ``>`` in one call and decodes with ``binascii``; it has the same semantics (PDF
whitespace ignored, an odd final digit padded with ``0``, any other byte an error), and falls
back to pyHanko's own reader for the rare hex string that contains a comment (``%``), which the
original skips. ``tests/test_pdf_speedups.py`` compares both on valid and invalid inputs.

pyHanko 0.38 also writes every name object (``NameObject.write_to_stream``) one byte at a time,
testing each byte and writing it separately: ~1.6 µs per name. A visible signature writes ~150
names (the stamp's font, image and form dictionaries), an invisible one ~50: ~0.15 ms of the
person stamp's extra cost (``python -m bench.run --appearance-only``). :func:`write_name` writes
a name whose bytes need no escape in one call, with the same bytes, and leaves any other name
(``#``, delimiters, whitespace, bytes outside 0x21-0x7E, no leading ``/``) to pyHanko's code.
"""

from __future__ import annotations

import binascii
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PDF_DELIMITERS, PDF_WHITESPACE, PdfStreamError

_original = generic.read_hex_string_from_stream
_original_write_name = generic.NameObject.write_to_stream
# The bytes pyHanko writes as they are after the leading "/" (misc.is_regular_character, in
# 0x21-0x7E, not "#"); every other byte is escaped as #XX by its code.
_NAME_PLAIN = bytes(
    b for b in range(0x21, 0x7F) if b != 0x23 and b not in PDF_WHITESPACE + PDF_DELIMITERS
)
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


def write_name(
    self: generic.NameObject, stream: Any, handler: Any = None, container_ref: Any = None
) -> None:
    """``NameObject.write_to_stream``: the same bytes as pyHanko's, in one write when no byte
    after the leading ``/`` needs an escape (ISO 32000-1 §7.3.5); pyHanko's code otherwise
    (escapes, and its ``PdfWriteError`` for a name without ``/``)."""
    encoded = self.encode("utf8")
    if encoded[:1] == b"/" and not encoded[1:].translate(None, _NAME_PLAIN):
        stream.write(encoded)
        return
    _original_write_name(self, stream, handler, container_ref)


def install() -> None:
    """Make pyHanko's object reader use :func:`read_hex_string_from_stream` and its name
    writer :func:`write_name` (idempotent)."""
    generic.read_hex_string_from_stream = read_hex_string_from_stream  # type: ignore[assignment]
    generic.NameObject.write_to_stream = write_name  # type: ignore[method-assign]


def original_read_hex_string_from_stream(
    stream: Any,
) -> generic.ByteStringObject | generic.TextStringObject:
    """pyHanko's own implementation (for comparison in tests)."""
    return _original(stream)


def original_write_name(name: generic.NameObject, stream: Any) -> None:
    """pyHanko's own name writer (for comparison in tests)."""
    _original_write_name(name, stream)
