"""The visible signature is rendered and looked at: Vietnamese text, top right of page 1."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.appearance import AppearanceSpec, vietnam_time
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from tests.support.pdfs import make_pdf


def test_vietnam_time_format() -> None:
    moment = datetime(2026, 11, 27, 7, 5, 9, 123456, tzinfo=UTC)
    assert vietnam_time(moment) == "2026-11-27T14:05:09+07:00"


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils not installed")
def test_stamp_renders_top_right_with_vietnamese_glyphs(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    pki, _ = dev_pki
    key = load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())
    signed = asyncio.run(
        async_sign_pdf(
            make_pdf(), key, SignOptions(level=SignatureLevel.B_B, appearance=AppearanceSpec())
        )
    )
    pdf = tmp_path / "signed.pdf"
    pdf.write_bytes(signed)

    # The stamp's text is real Vietnamese text (extractable), not "þÿ" mojibake.
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Ký bởi: Sở Tư pháp tỉnh Demo A" in text
    assert re.search(r"Thời gian ký: \d\d:\d\d:\d\d ngày \d\d/\d\d/\d{4} \(\+07:00\)", text), text

    # Rendered, the ink sits in the top-right corner of page 1 (A4 at 72 dpi: 595x842).
    subprocess.run(
        ["pdftoppm", "-r", "72", "-png", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")],
        check=True,
    )
    png = next(tmp_path.glob("page*.png"))
    from PIL import Image

    image = Image.open(png).convert("L")
    width, height = image.size
    pixels = image.load()
    assert pixels is not None

    def ink(x0: int, y0: int, x1: int, y1: int) -> int:
        return sum(1 for x in range(x0, x1) for y in range(y0, y1) if pixels[x, y] < 128)

    assert ink(width // 2, 0, width, 90) > 200  # the stamp
    assert ink(width // 2, height // 2, width, height) == 0  # nothing elsewhere on the right

    reader = PdfFileReader(pdf.open("rb"))
    assert reader.embedded_signatures[0].field_name == "Signature1"
