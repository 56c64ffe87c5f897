"""Virus scanning against a real clamd (Debian's clamav-daemon) with a test-made EICAR database."""

from __future__ import annotations

import pytest

from signing_service.screening.clamav import ClamdUnavailable, scan
from tests.support.clamd import EICAR, Clamd
from tests.support.pdfs import make_pdf


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
