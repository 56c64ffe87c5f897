"""Virus scanning against a real clamd (Debian's clamav-daemon) with a test-made EICAR database."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from signing_service.screening.clamav import ClamdUnavailable, scan
from tests.support.clamd import EICAR, Clamd, find_clamd
from tests.support.pdfs import make_pdf


@pytest.fixture(scope="module")
def clamd() -> Iterator[Clamd]:
    binary = find_clamd()
    if binary is None:
        if os.environ.get("SIGNING_SERVICE_TEST_REQUIRE_CLAMD") == "1":
            pytest.fail("clamd is required (make test installs clamav-daemon) but was not found")
        pytest.skip("clamd not installed (make test installs clamav-daemon)")
    server = Clamd(binary).start()
    yield server
    server.stop()


def test_eicar_is_found(clamd: Clamd) -> None:
    result = scan(clamd.socket, b"prefix " + EICAR + b" suffix")
    assert result.infected
    assert result.signature is not None and "Eicar" in result.signature


def test_clean_pdf_passes(clamd: Clamd) -> None:
    assert not scan(clamd.socket, make_pdf(padding_bytes=300_000)).infected


def test_eicar_inside_a_pdf_stream_is_found(clamd: Clamd) -> None:
    # Raw (uncompressed) payload inside a PDF: what a scanner must still see.
    pdf = make_pdf()
    infected = pdf.replace(b"%%EOF", b"% " + EICAR + b"\n%%EOF")
    assert scan(clamd.socket, infected).infected


def test_clamd_down_is_not_clean(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClamdUnavailable):
        scan(str(tmp_path / "no-such.sock"), b"data")
