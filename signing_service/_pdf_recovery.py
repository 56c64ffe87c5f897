"""Reading streams whose ``/Length`` is wrong, as PDF viewers do, installed into pyHanko.

pyHanko 0.38 reads ``/Length`` bytes after ``stream`` and tolerates one byte too many; any other
wrong length is ``PdfReadError("Unable to find 'endstream' marker …")``. Wrong lengths are common
in documents from older or home-made writers, and viewers (Acrobat, pdf.js, qpdf's recovery)
find the stream's end at its ``endstream`` keyword instead. Without this, the difference
analysis could not read a revision of such a document once a later revision was added (a second
signature, a timestamp), and a valid signature was reported "modified after signing" (crying
wolf). Signed bytes are untouched: integrity is the ``/ByteRange`` digest; both revisions of a
comparison are read the same way.

Recovery (only when pyHanko's own reading fails on the end marker): the data runs from the
byte after the ``stream`` line's end of line to the first ``endstream`` keyword within
:data:`MAX_SCAN` bytes, less one end of line before it (PDF 32000-1 §7.3.8.1). A stream with
no ``endstream`` in that window stays an error, as before.
"""

from __future__ import annotations

from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PdfReadError, read_non_whitespace, skip_over_whitespace

_original = generic._maybe_read_stream_payload
# How far past the stream's start the end marker is looked for: bounded, so that a file of
# many streams without any end marker cannot make reading quadratic.
MAX_SCAN = 8 * 1024 * 1024
_CHUNK = 256 * 1024
_MARKER = b"endstream"


def _find_marker(stream: Any, start: int) -> int | None:
    """Offset of the first ``endstream`` at or after ``start`` (within :data:`MAX_SCAN`)."""
    stream.seek(start)
    carried = b""
    scanned = 0
    while scanned < MAX_SCAN:
        chunk = stream.read(min(_CHUNK, MAX_SCAN - scanned))
        if not chunk:
            return None
        window = carried + chunk
        at = window.find(_MARKER)
        if at >= 0:
            return start + scanned - len(carried) + at
        scanned += len(chunk)
        carried = window[-(len(_MARKER) - 1) :]
    return None


def read_stream_payload(stream: Any, data: generic.DictionaryObject, handler: Any) -> bytes | None:
    """pyHanko's ``_maybe_read_stream_payload`` with recovery of a wrong ``/Length``.

    Returns the raw (still encoded) stream data, or ``None`` when the dictionary is not
    followed by ``stream``. Raises :class:`PdfReadError` when no end marker is found.
    """
    pos = stream.tell()
    try:
        return _original(stream, data, handler)  # type: ignore[no-any-return]
    except PdfReadError as e:
        if _MARKER.decode() not in str(e):
            raise
        failure = e
    stream.seek(pos)
    if read_non_whitespace(stream, allow_eof=True) != b"s" or stream.read(5) != b"tream":
        raise failure
    skip_over_whitespace(stream, stop_after_eol=True)
    start = stream.tell()
    end = _find_marker(stream, start)
    if end is None:
        raise failure
    stream.seek(start)
    payload = stream.read(end - start)
    # The end of line before "endstream" is not part of the data.
    if payload.endswith(b"\r\n"):
        payload = payload[:-2]
    elif payload.endswith((b"\n", b"\r")):
        payload = payload[:-1]
    stream.seek(end + len(_MARKER))
    return payload


def install() -> None:
    """Make pyHanko's object reader use :func:`read_stream_payload` (idempotent)."""
    generic._maybe_read_stream_payload = read_stream_payload
