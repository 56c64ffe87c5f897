"""The signing request's input hash, continued into the signature's own digest
(signing/prefix_digest.py :func:`covering`, engine ``input_prefix``): one pass over the upload
serves the records (original, signed document, Idempotency-Key digest) and the signature."""

from __future__ import annotations

import asyncio
import hashlib
import io
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from signing_service.pki.dev import DevPki
from signing_service.signing import prefix_digest
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.levels import SignatureLevel
from tests.support.keys import loaded_dev_keys
from tests.support.pdfs import make_pdf

MOMENT = datetime(2026, 11, 27, 7, 5, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def keys(dev_pki: tuple[DevPki, int]) -> dict[str, Any]:
    return loaded_dev_keys(dev_pki[0])


def _sign(pdf: bytes, key: Any, prefix: prefix_digest.CoveredPrefix | None) -> bytes:
    options = SignOptions(level=SignatureLevel.B_B)
    return asyncio.run(async_sign_pdf(pdf, key, options, now=MOMENT, input_prefix=prefix))


def _intact(pdf: bytes, keys: dict[str, Any]) -> list[bool]:
    roots = [key.chain[-1] for key in keys.values() if key.chain]
    reader = PdfFileReader(io.BytesIO(pdf))
    return [
        validate_pdf_signature(e, ValidationContext(trust_roots=roots)).intact
        for e in reader.embedded_signatures
    ]


def test_covering_hashes_like_hashlib() -> None:
    data = make_pdf(padding_bytes=50_000)
    prefix = prefix_digest.covering(data)
    assert prefix.length == len(data)
    records = prefix.hasher()
    assert records.hexdigest() == hashlib.sha256(data).hexdigest()
    # hexdigest does not finalise: the signed document's digest continues from it.
    continued = records.copy()
    continued.update(memoryview(b"appended revision"))
    assert continued.hexdigest() == hashlib.sha256(data + b"appended revision").hexdigest()
    assert records.hexdigest() == hashlib.sha256(data).hexdigest()


def test_signature_continues_the_input_hash(keys: dict[str, Any]) -> None:
    pdf = make_pdf(padding_bytes=200_000)
    key = keys["agency-a-seal"]
    signed = _sign(pdf, key, prefix_digest.covering(pdf))
    assert signed.startswith(pdf)
    assert _intact(signed, keys) == [True]
    # The digest is SHA-256 of the whole /ByteRange, computed here independently.
    embedded = PdfFileReader(io.BytesIO(signed)).embedded_signatures[0]
    _, a, b, n = (int(v) for v in embedded.sig_object["/ByteRange"])
    assert embedded.compute_digest() == hashlib.sha256(signed[:a] + signed[b : b + n]).digest()


def test_input_hash_is_used_only_over_the_same_bytes(keys: dict[str, Any]) -> None:
    """A hash of other bytes (same length) or of another algorithm is not continued: the
    signature is computed from the start and verifies."""
    pdf = make_pdf(padding_bytes=100_000)
    other = bytearray(pdf)
    other[5000] ^= 0xFF
    key = keys["agency-a-seal"]
    for prefix in (
        prefix_digest.covering(bytes(other)),
        prefix_digest.covering(pdf, "sha512"),
        None,
    ):
        assert _intact(_sign(pdf, key, prefix), keys) == [True]


def test_the_input_state_is_what_the_signature_continues(keys: dict[str, Any]) -> None:
    """The continuation is really taken: a state that does not match its bytes (which the
    service never builds) yields a signature over the wrong digest, which fails."""
    pdf = make_pdf(padding_bytes=100_000)
    wrong_state = hashes.Hash(hashes.SHA256())
    wrong_state.update(b"x" * len(pdf))
    forged = prefix_digest.CoveredPrefix("sha256", len(pdf), wrong_state, pdf)
    assert _intact(_sign(pdf, keys["agency-a-seal"], forged), keys) == [False]
