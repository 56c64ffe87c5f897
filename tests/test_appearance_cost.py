"""Work a visible signature does once, not twice (issue 10, "visible person+seal ÷ invisible").

- The page text is measured once per page and signature: the signer-block search and the
  free-space search share it (signing/placement.py ``PageTexts``); seen by stopping the layout
  worker after the first measurement: no worker is started again.
- The seal's check of the person signature under it keeps the hash of the document up to that
  signature's /Contents, and the seal's own digest continues from it
  (signing/prefix_digest.py): the digests are checked against an independent SHA-256 of the
  /ByteRange, a prefix of other bytes is not used, and the sealed document verifies.
- With several signatures of the agency, the seal goes over the last one (the check runs from
  the last field back).
- The free-space search's bit operations give what a cell-by-cell search gives.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import random
from datetime import UTC, datetime
from functools import reduce
from operator import or_
from typing import Any

import pytest
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.general import byte_range_digest
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from signing_service.pki.dev import DevPki
from signing_service.signing import prefix_digest, textlayout
from signing_service.signing.appearance import KindAppearance, seal_target
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.levels import SignatureLevel
from signing_service.signing.placement import (
    PageTexts,
    _Grid,
    _pages,
    _window_or,
    place,
    request_last_page,
    signer_gap,
    text_lines,
)
from signing_service.signing.stamp_images import stamp_image
from tests.support.images import blue_scribble, red_seal
from tests.support.keys import loaded_dev_keys
from tests.support.pdfs import make_pdf

MOMENT = datetime(2026, 11, 27, 7, 5, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def keys(dev_pki: tuple[DevPki, int]) -> dict[str, Any]:
    return loaded_dev_keys(dev_pki[0])


def sign(pdf: bytes, key: Any, appearance: KindAppearance | None) -> bytes:
    options = SignOptions(level=SignatureLevel.B_B, appearance=appearance)
    return asyncio.run(async_sign_pdf(pdf, key, options, now=MOMENT))


def person() -> KindAppearance:
    signature = stamp_image(blue_scribble(), width_mm=45.0, height_mm=18.0)
    return KindAppearance(kind="person", title="GIÁM ĐỐC", signature=signature)


def seal() -> KindAppearance:
    return KindAppearance(kind="seal", seal=stamp_image(red_seal(), width_mm=34.0, height_mm=34.0))


def verified(pdf: bytes, keys: dict[str, Any]) -> list[tuple[bool, bool]]:
    """(intact, valid) of every signature, by pyHanko's validator (trust: the dev root)."""
    roots = [key.chain[-1] for key in keys.values() if key.chain]
    reader = PdfFileReader(io.BytesIO(pdf))
    out = []
    for embedded in reader.embedded_signatures:
        status = validate_pdf_signature(embedded, ValidationContext(trust_roots=roots))
        out.append((status.intact, status.valid))
    return out


# --- the page text, once --------------------------------------------------------------------


def test_page_text_is_measured_once_for_gap_and_placement() -> None:
    pdf = make_pdf(text="Nguyen Van An", pages=2)
    reader = PdfFileReader(io.BytesIO(pdf))
    last = list(_pages(reader))[-1]
    texts = PageTexts(reader)
    # The signer block search reads the last page with its texts (no title above the name).
    assert signer_gap(reader, "Không Có Tên Này", texts) is None
    with_text = texts.text_lines(last)
    assert with_text and all(isinstance(text, str) for _box, text in with_text)
    textlayout.default().close()
    assert textlayout.default().worker_pid is None
    # The free-space search on the same page uses those boxes: no worker is started.
    placed = place(reader, width=160, height=90, region="signature-block", texts=texts)
    assert placed.page_index == last.index
    assert texts.lines(last) == [box for box, _text in with_text]
    assert textlayout.default().worker_pid is None
    # The same boxes as a measurement of its own.
    assert texts.lines(last) == text_lines(pdf, last)
    assert textlayout.default().worker_pid is not None


def test_a_last_page_asked_ahead_is_used_once_and_only_for_its_document() -> None:
    pdf = make_pdf(text="Trang", pages=3)
    reader = PdfFileReader(io.BytesIO(pdf))
    pages = list(_pages(reader))
    texts = PageTexts(reader, request_last_page(pdf))
    with_text = texts.text_lines(pages[-1])
    textlayout.default().close()
    assert texts.lines(pages[-1]) == [box for box, _text in with_text]
    assert texts.measured(pages[-1]) and not texts.measured(pages[0])
    assert textlayout.default().worker_pid is None  # the answer asked ahead, nothing since
    assert texts.lines(pages[-1]) == text_lines(pdf, pages[-1])
    # Asked ahead for other bytes: not used, the page is measured for this document.
    other = make_pdf(text="Trang khac", pages=3)
    texts = PageTexts(reader, request_last_page(other))
    assert texts.text_lines(pages[-1]) == with_text


def test_page_texts_measures_each_page_it_is_asked_for() -> None:
    pdf = make_pdf(text="Trang", pages=2)
    reader = PdfFileReader(io.BytesIO(pdf))
    first, second = list(_pages(reader))
    texts = PageTexts(reader)
    assert not texts.measured(first)
    boxes = texts.lines(first)
    assert texts.measured(first) and not texts.measured(second)
    assert boxes == text_lines(pdf, first)
    assert texts.lines(second) == text_lines(pdf, second)


# --- the seal's check and its own digest ----------------------------------------------------


def test_prefix_hash_is_the_byte_range_digest() -> None:
    data = make_pdf(padding_bytes=200_000)
    byte_range = [0, 150_000, 160_000, len(data) - 160_000]
    digest, prefix = prefix_digest.hash_with_prefix(data, byte_range, "sha256")
    _, expected = byte_range_digest(io.BytesIO(data), byte_range, "sha256")
    assert digest == expected
    assert digest == hashlib.sha256(data[:150_000] + data[160_000:]).digest()
    continued = prefix.continued()
    continued.update(data[150_000:])
    assert continued.finalize() == hashlib.sha256(data).digest()
    # A range reaching past the end is cut there, as pyHanko reads it.
    long_range = [0, len(data) + 10, len(data) + 20, 5]
    digest, prefix = prefix_digest.hash_with_prefix(data, long_range, "sha256")
    assert digest == hashlib.sha256(data).digest()
    assert prefix.length == len(data)
    with pytest.raises(ValueError):
        prefix_digest.hash_with_prefix(data, [5, 10, 20, 5], "sha256")
    with pytest.raises(ValueError):
        prefix_digest.hash_with_prefix(data, [0, 10, 20], "sha256")


def _pyhanko_sign(pdf: bytes, key: Any, prefix: prefix_digest.CoveredPrefix | None) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    signer = PdfSigner(PdfSignatureMetadata(field_name="Sig"), signer=key.signer)
    out = io.BytesIO()
    with prefix_digest.continuing(prefix):
        asyncio.run(signer.async_sign_pdf(writer, output=out))
    return out.getvalue()


def test_a_prefix_of_other_bytes_is_not_used(keys: dict[str, Any]) -> None:
    """The continuation is used only over the bytes that were hashed: a prefix of another
    document of the same length (or another algorithm) would give a wrong digest and a broken
    signature; the signature made with it verifies, as one made with the right prefix does."""
    pdf = make_pdf(padding_bytes=100_000)
    other = bytearray(pdf)
    other[5000] ^= 0xFF
    _, right = prefix_digest.hash_with_prefix(pdf, [0, 90_000, 90_000, 0], "sha256")
    _, wrong = prefix_digest.hash_with_prefix(bytes(other), [0, 90_000, 90_000, 0], "sha256")
    _, sha512 = prefix_digest.hash_with_prefix(pdf, [0, 90_000, 90_000, 0], "sha512")
    key = keys["agency-a-seal"]
    for prefix in (right, wrong, sha512, None):
        assert verified(_pyhanko_sign(pdf, key, prefix), keys) == [(True, True)]
    out = io.BytesIO()
    out.write(pdf)
    buffer = out.getbuffer()
    try:
        assert right.applies_to(buffer, len(pdf), "sha256")
        assert not wrong.applies_to(buffer, len(pdf), "sha256")
        assert not sha512.applies_to(buffer, len(pdf), "sha256")
        assert not right.applies_to(buffer, 89_999, "sha256")  # past the new /Contents
    finally:
        buffer.release()


def test_seal_over_person_signature_verifies_with_the_kept_prefix(keys: dict[str, Any]) -> None:
    signed = sign(make_pdf(padding_bytes=300_000), keys["officer"], person())
    reader = PdfFileReader(io.BytesIO(signed))
    target = seal_target(reader, "Sở Tư pháp tỉnh Demo A")
    assert target is not None and target.prefix is not None
    byte_range = [int(v) for v in reader.embedded_signatures[0].sig_object["/ByteRange"]]
    assert target.prefix.length == byte_range[1]
    sealed = sign(signed, keys["agency-a-seal"], seal())
    assert verified(sealed, keys) == [(True, True), (True, True)]
    # The seal's digest is SHA-256 of its whole /ByteRange, computed here independently.
    embedded = PdfFileReader(io.BytesIO(sealed)).embedded_signatures[1]
    _, a, b, n = (int(v) for v in embedded.sig_object["/ByteRange"])
    assert embedded.compute_digest() == hashlib.sha256(sealed[:a] + sealed[b : b + n]).digest()
    assert b + n == len(sealed)


def test_seal_goes_over_the_last_signature_of_the_agency(keys: dict[str, Any]) -> None:
    """Two person signatures of agency A, one of agency B after them: the seal of A goes over
    the second of A's (the last that passes the check), not B's and not the first."""
    once = sign(make_pdf(), keys["officer"], person())
    twice = sign(once, keys["officer"], person())
    thrice = sign(twice, keys["agency-b-seal"], person())
    reader = PdfFileReader(io.BytesIO(thrice))
    names = [s.field_name for s in reader.embedded_signatures]
    target = seal_target(reader, "Sở Tư pháp tỉnh Demo A")
    assert target is not None and target.name == names[1]
    assert seal_target(reader, "UBND xã Demo B") is not None
    assert seal_target(reader, "UBND xã Demo B").name == names[2]  # type: ignore[union-attr]
    assert seal_target(reader, "Không có cơ quan này") is None


def _signer_der(signed: bytes, index: int = -1) -> bytes:
    return PdfFileReader(io.BytesIO(signed)).embedded_signatures[index].signer_cert.dump()


def test_certificate_facts_are_kept_per_agency_and_certificate(
    keys: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seal's check keeps what it read of a signer certificate (appearance._cert_facts)
    under the sealing agency and the certificate's exact bytes: the answer with the facts kept
    is the answer read afresh; another agency's check neither uses nor changes A's entries and
    is refused; a changed certificate is an entry of its own; the cache stays bounded."""
    from signing_service.signing import appearance

    monkeypatch.setattr(appearance, "_cert_facts", type(appearance._cert_facts)())
    agency_a, agency_b = "Sở Tư pháp tỉnh Demo A", "UBND xã Demo B"
    by_officer = sign(make_pdf(), keys["officer"], person())
    officer_der = _signer_der(by_officer)

    def target(document: bytes, organisation: str) -> str | None:
        found = seal_target(PdfFileReader(io.BytesIO(document)), organisation)
        return None if found is None else found.name

    fresh = target(by_officer, agency_a)
    assert fresh is not None
    assert (agency_a, officer_der) in appearance._cert_facts
    assert target(by_officer, agency_a) == fresh  # from the kept facts: the same field
    kept_a = dict(appearance._cert_facts)
    # Agency B asks about A's officer: an entry of B's own, and no seal of B over A's officer.
    assert target(by_officer, agency_b) is None
    assert (agency_b, officer_der) in appearance._cert_facts
    assert all(appearance._cert_facts[key] == value for key, value in kept_a.items())
    # Another certificate of agency A (its seal key): another entry, found as before.
    by_seal_key = sign(make_pdf(), keys["agency-a-seal"], person())
    seal_der = _signer_der(by_seal_key)
    assert seal_der != officer_der
    assert target(by_seal_key, agency_a) is not None
    assert (agency_a, seal_der) in appearance._cert_facts
    # B's own signature is B's target, never A's, whatever the cache holds.
    by_b = sign(make_pdf(), keys["agency-b-seal"], person())
    assert target(by_b, agency_b) is not None
    assert target(by_b, agency_a) is None
    # Bounded: past the bound, the least recently used entries go first.
    monkeypatch.setattr(appearance, "CERT_FACTS_MAX", 2)
    assert target(by_officer, agency_a) == fresh  # used: now the most recent
    assert target(by_officer, "Không có cơ quan này") is None  # a new entry
    assert list(appearance._cert_facts) == [
        (agency_a, officer_der),
        ("Không có cơ quan này", officer_der),
    ]


# --- the free-space search ------------------------------------------------------------------


def _naive_free_starts(grid: _Grid, w: float, h: float, margin: float) -> list[tuple[int, int]]:
    """Every top-left cell (r, c) inside the margins whose w × h box covers no occupied cell,
    cell by cell: what ``_Grid.free_starts`` computes with bit operations."""
    s = grid.cell
    wc, hc = math.ceil(w / s), math.ceil(h / s)
    c_lo, c_hi = math.ceil(margin / s), math.floor((grid.width - margin) / s) - wc
    r_lo, r_hi = math.ceil(margin / s), math.floor((grid.height - margin) / s) - hc
    out = []
    for r in range(r_lo, min(r_hi, grid.rows_n - hc) + 1):
        mask = 0
        for c in range(c_lo, c_hi + 1):
            cells = [
                (grid.rows[rr] >> cc) & 1 for rr in range(r, r + hc) for cc in range(c, c + wc)
            ]
            if not any(cells):
                mask |= 1 << c
        out.append((r, mask))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_free_starts_matches_a_cell_by_cell_search(seed: int) -> None:
    rng = random.Random(seed)
    width, height = rng.choice([(120.0, 90.0), (150.0, 110.0), (97.0, 131.0)])
    obstacles = []
    for _ in range(rng.randint(0, 6)):
        x, y = rng.uniform(-10, width), rng.uniform(-10, height)
        obstacles.append((x, y, x + rng.uniform(1, 60), y + rng.uniform(1, 20)))
    grid = _Grid(width, height, obstacles)
    for w, h in [(10.0, 6.0), (31.0, 17.0), (2.0, 2.0), (60.0, 41.0)]:
        naive = _naive_free_starts(grid, w, h, 4.0)
        assert grid.free_starts(w, h, 4.0) == naive, (w, h)
        # Read row by row from any row (placement's way): the same rows from there on.
        lazy = grid.free_rows(w, h, 4.0)
        assert (lazy is None) == (naive is None)
        if lazy is not None and naive is not None:
            assert bool(lazy) == bool(naive)
            for first in (-3, 0, 1, 7, 20, 10_000):
                assert list(lazy.from_row(first)) == [x for x in naive if x[0] >= first], first


def test_window_or() -> None:
    rng = random.Random(7)
    for n in (0, 1, 5, 17, 64):
        rows = [rng.choice([0, 0, 1 << rng.randrange(40), rng.getrandbits(40)]) for _ in range(n)]
        for k in (1, 2, 3, 5, 16, 17, 70):
            naive = [reduce(or_, rows[r : r + k], 0) for r in range(n - k + 1)]
            assert _window_or(rows, k) == naive, (n, k)
