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


def _name_outcome(writer, name: str):  # type: ignore[no-untyped-def]
    from pyhanko.pdf_utils.generic import NameObject
    from pyhanko.pdf_utils.misc import PdfWriteError

    stream = BytesIO()
    try:
        writer(NameObject(name), stream)
    except (PdfWriteError, StopIteration):  # pyHanko's for "" is StopIteration
        return ("error", stream.getvalue())
    return ("ok", stream.getvalue())


def test_name_writer_same_bytes_as_pyhanko() -> None:
    from signing_service._pdf_speedups import original_write_name, write_name

    rng = random.Random(20261130)
    names = [
        "/Type",
        "/FontDescriptor",
        "/",
        "/A#B",  # "#" is escaped
        "/A B",  # whitespace
        "/A(B)",  # delimiters
        "/A/B",
        "/Ký",  # non-ASCII: UTF-8 bytes escaped
        "/\x7f",
        "NoSlash",  # pyHanko refuses it
        "",
    ]
    alphabet = [chr(c) for c in range(0x20, 0x80)] + ["ế", "\x00", "\t"]
    for _ in range(3_000):
        names.append("/" + "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))))
    fast = 0
    for name in names:
        expected = _name_outcome(original_write_name, name)
        assert _name_outcome(write_name, name) == expected, name
        fast += expected[0] == "ok" and expected[1] == name.encode()
    # Both paths are exercised: plain names in one write, the others by pyHanko's code.
    assert 100 < fast < len(names) - 100
