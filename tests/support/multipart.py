"""Multipart bodies built byte by byte, so that tests can send what HTTP clients never would
(httpx percent-encodes control characters in file names: a raw NUL needs this)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

# (field name, value) for a form field; (field name, file name, content) for a file part.
Part = tuple[bytes | str, bytes | str] | tuple[bytes | str, bytes | str | None, bytes]


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def multipart(parts: Sequence[Part], boundary: bytes | None = None) -> tuple[bytes, str]:
    """The body and its ``Content-Type`` header for ``parts``, names and values as given."""
    boundary = boundary or secrets.token_hex(12).encode()
    out = bytearray()
    for part in parts:
        out += b"--" + boundary + b"\r\n"
        if len(part) == 2:
            name, value = part
            out += b'Content-Disposition: form-data; name="' + _b(name) + b'"\r\n\r\n'
            out += _b(value) + b"\r\n"
        else:
            name, filename, content = part
            out += b'Content-Disposition: form-data; name="' + _b(name) + b'"'
            if filename is not None:
                out += b'; filename="' + _b(filename) + b'"'
            out += b"\r\nContent-Type: application/octet-stream\r\n\r\n" + content + b"\r\n"
    out += b"--" + boundary + b"--\r\n"
    return bytes(out), "multipart/form-data; boundary=" + boundary.decode("latin-1")
