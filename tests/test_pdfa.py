"""PDF/A stays PDF/A (issue 10, "What to build" 5): PDF/A-1b, 2b and 3b inputs signed at B-T
and B-LTA with the visible stamp still conform, as veraPDF (the PDF Association's validator,
built from Maven Central by ``tools/verapdf-check``) judges them; and the stamp's subset font
carries a complete ``/CIDSet`` (ISO 19005-1 §6.3.5, veraPDF rule 6.3.5-3).

Slow: the first run builds the harness (veraPDF from Maven Central); each later run starts one
JVM for all files.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from fontTools.ttLib import TTFont

from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.appearance import default_font
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.signing.pdfa import cid_set
from tests.support.pdfa import TOOL, pdfa_pdf, verapdf, verapdf_jar

pytestmark = pytest.mark.slow

FIELD_INPUTS = Path(__file__).resolve().parent.parent.parent / "shared" / "field-inputs"


@pytest.fixture(scope="module")
def jar() -> Path:
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        message = f"veraPDF needs Java 17 and Maven: {', '.join(missing)} not found"
        if os.environ.get("SIGNING_SERVICE_TEST_REQUIRE_JAVA") == "1":
            pytest.fail(message + " (make test installs them)")
        pytest.skip(message)
    assert (TOOL / "pom.xml").is_file()
    return verapdf_jar()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # What is checked is the file; one database is enough.
    return f"sqlite:///{tmp_path / 'metadata.db'}"


def sign(api: Any, credentials: dict[str, Any], data: bytes, level: str) -> bytes:
    headers = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    response = api.post(
        "/v1/signatures",
        headers=headers,
        # agency-a-seal draws the visible stamp (its profile's appearance is {}).
        data={"profile": "agency-a-seal", "level": level},
        files={"file": ("van-ban.pdf", data, "application/pdf")},
    )
    assert response.status_code == 201, response.text
    content = api.get(response.json()["document"]["download_url"], headers=headers)
    assert content.status_code == 200
    return content.content  # type: ignore[no-any-return]


def stamp_fonts(signed: bytes) -> list[tuple[bytes | None, bytes]]:
    """``(/CIDSet bytes or None, /FontFile2 bytes)`` of each embedded CIDFontType2 (the
    stamp's; an input's own simple fonts need no /CIDSet)."""
    with pikepdf.open(io.BytesIO(signed)) as pdf:
        return [
            (
                d.CIDSet.read_bytes() if "/CIDSet" in d else None,
                d.FontFile2.read_bytes(),
            )
            for obj in pdf.objects
            if isinstance(obj, pikepdf.Dictionary)
            and obj.get("/Subtype") == pikepdf.Name.CIDFontType2
            and "/FontFile2" in (d := obj.FontDescriptor)
        ]


def test_cid_set_bits() -> None:
    # ISO 32000-1 Table 124: CID 0 is the high-order bit of the first byte.
    assert cid_set({0}) == b"\x80"
    assert cid_set({0, 7, 8, 17}) == b"\x81\x80\x40"


def test_pdfa_inputs_conform_before_signing(jar: Path, tmp_path: Path) -> None:
    files = []
    for part in (1, 2, 3):
        path = tmp_path / f"pdfa-{part}b.pdf"
        path.write_bytes(pdfa_pdf(part))
        files.append(path)
    results = verapdf(jar, files)
    assert [(r["flavour"], r["compliant"]) for r in results] == [
        ("1b", True),
        ("2b", True),
        ("3b", True),
    ], results


def test_signed_pdfa_stays_pdfa(
    jar: Path,
    api: Any,
    credentials: dict[str, Any],
    dev_pki: tuple[DevPki, int],
    tmp_path: Path,
) -> None:
    """Through the API with the visible stamp at B-T and B-LTA, and through the engine with
    an invisible signature (PDF/A-1 wants an appearance on every widget, ISO 19005-1 §6.9)."""
    seal = load_pkcs12_file(dev_pki[0].p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())
    inputs = {f"{part}b": pdfa_pdf(part) for part in (1, 2, 3)}
    if (FIELD_INPUTS / "c03b-pdfa1b.pdf").is_file():
        inputs["c03b"] = (FIELD_INPUTS / "c03b-pdfa1b.pdf").read_bytes()
    files = []
    for name, data in inputs.items():
        for level in ("B-T", "B-LTA"):
            signed = sign(api, credentials, data, level)
            fonts = stamp_fonts(signed)
            assert fonts and all(cids is not None for cids, _ in fonts)
            path = tmp_path / f"{name}-{level}.pdf"
            path.write_bytes(signed)
            files.append(path)
        invisible = asyncio.run(
            async_sign_pdf(data, seal, SignOptions(level=SignatureLevel.B_B, appearance=None))
        )
        path = tmp_path / f"{name}-invisible.pdf"
        path.write_bytes(invisible)
        files.append(path)
    results = verapdf(jar, files)
    failures = {Path(r["file"]).name: r.get("messages", r.get("error")) for r in results}
    assert all(r.get("compliant") for r in results), failures
    assert {r["flavour"] for r in results} == {"1b", "2b", "3b"}


def test_cid_set_lists_exactly_the_glyphs_of_the_font_program(
    api: Any, credentials: dict[str, Any]
) -> None:
    """The set names exactly the glyph ids of the embedded subset (ISO 19005-1 §6.3.5,
    19005-2 §6.2.11.4.2), and the subset is one (far fewer glyphs than the font)."""
    signed = sign(api, credentials, pdfa_pdf(1), "B-B")
    ((bits, program),) = stamp_fonts(signed)
    assert bits is not None
    named = {i * 8 + b for i, byte in enumerate(bits) for b in range(8) if byte & (0x80 >> b)}
    font = TTFont(io.BytesIO(program))
    glyf = font["glyf"]
    order = font.getGlyphOrder()
    drawn = {gid for gid, name in enumerate(order) if glyf[name].numberOfContours != 0}
    assert named == set(range(len(order)))
    assert 0 < len(drawn) < len(order) < len(TTFont(default_font()).getGlyphOrder())
