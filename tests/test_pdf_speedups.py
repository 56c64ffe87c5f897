"""The fast hex-string reader behaves exactly like pyHanko's own, on valid and invalid input."""

from __future__ import annotations

import random
from io import BytesIO

import pytest
from pyhanko.pdf_utils.misc import PdfStreamError

from signing_service._pdf_speedups import (
    original_read_hex_string_from_stream,
    read_hex_string_from_stream,
)


def _outcome(reader, data: bytes):  # type: ignore[no-untyped-def]
    stream = BytesIO(data)
    try:
        value = reader(stream)
    except PdfStreamError:
        return ("error", None)
    return (type(value).__name__, bytes(value.original_bytes), stream.tell())


def _cases() -> list[bytes]:
    rng = random.Random(20261129)
    cases = [
        b"<>",
        b"<0>",
        b"<abc>",
        b"<ABCDEF0123456789>",
        b"<4E 6F\n76 \t 0d\r0a\x0c00>rest",
        b"<FEFF0054>",  # a UTF-16 text string
        b"<12 % a comment\n 34>",  # comments are skipped by pyHanko: fallback path
        b"<12G4>",
        b"<12",
        b"<",
        b"<12<34>",
        b"<" + b"0" * 200_000 + b">",
    ]
    alphabet = b"0123456789abcdefABCDEF \n\r\t\x0c\x00%<>xyz"
    for _ in range(3_000):
        body = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        cases.append(b"<" + body + (b">" if rng.random() < 0.8 else b"") + b" tail")
    return cases


@pytest.mark.parametrize("chunk", [0, 1])
def test_same_result_as_pyhanko(chunk: int) -> None:
    for data in _cases()[chunk::2]:
        assert _outcome(read_hex_string_from_stream, data) == _outcome(
            original_read_hex_string_from_stream, data
        ), data[:80]
