"""Screening corpus built by the tests themselves: valid files of every allowed type, and every
kind of hostile file the storage issue names (the API and storage parts come with that issue)."""

from __future__ import annotations

import io
import zipfile

import pikepdf
import pytest
from PIL import Image

from signing_service.screening import (
    DOCX,
    JPEG,
    ODT,
    PDF,
    PNG,
    TIFF,
    XLSX,
    XML,
    ScreeningPolicy,
    screen,
)
from tests.support.pdfs import encrypted_pdf, make_pdf


def image(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


def office(kind: str, extra: dict[str, bytes] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        if kind == "odt":
            z.writestr("mimetype", ODT, compress_type=zipfile.ZIP_STORED)
            z.writestr("content.xml", "<office:document-content/>")
            z.writestr("META-INF/manifest.xml", "<manifest/>")
        else:
            z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
            z.writestr("_rels/.rels", "<Relationships/>")
            part = "word/document.xml" if kind == "docx" else "xl/workbook.xml"
            z.writestr(part, "<doc>Nội dung</doc>")
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return out.getvalue()


def pdf_with(action: str) -> bytes:
    pdf = pikepdf.open(io.BytesIO(make_pdf()))
    if action == "javascript":
        pdf.Root.OpenAction = pdf.make_indirect(
            pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert('x')"))
        )
    elif action == "launch":
        pdf.pages[0].AA = pikepdf.Dictionary(
            O=pikepdf.Dictionary(S=pikepdf.Name.Launch, F=pikepdf.String("cmd.exe"))
        )
    elif action == "embedded":
        pdf.attachments["payload.exe"] = pikepdf.AttachedFileSpec(pdf, b"MZ\x90\x00")
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


VALID = [
    ("quyet-dinh.pdf", make_pdf(), PDF),
    ("anh.jpg", image("JPEG"), JPEG),
    ("anh.png", image("PNG"), PNG),
    ("ban-scan.tiff", image("TIFF"), TIFF),
    ("don.docx", office("docx"), DOCX),
    ("bang.xlsx", office("xlsx"), XLSX),
    ("van-ban.odt", office("odt"), ODT),
    ("ho-so.xml", b'<?xml version="1.0" encoding="UTF-8"?><HoSo><Ma>1</Ma></HoSo>', XML),
]


@pytest.mark.parametrize(("name", "data", "media_type"), VALID, ids=[v[0] for v in VALID])
def test_valid_files_are_accepted(name: str, data: bytes, media_type: str) -> None:
    result = screen(data, name)
    assert result.accepted, (result.code, result.detail)
    assert result.media_type == media_type


BOMB = office("docx", {"word/media/padding.bin": b"\0" * (64 * 1024 * 1024)})

HOSTILE = [
    ("empty.pdf", b"", "EMPTY_FILE"),
    ("setup.pdf", b"MZ\x90\x00\x03" + b"\0" * 200, "POLYGLOT_FILE"),
    ("html-then-pdf.pdf", b"<html><script>alert(1)</script>\n" + make_pdf(), "POLYGLOT_FILE"),
    ("pdf-then-zip.pdf", make_pdf() + office("docx"), "POLYGLOT_FILE"),
    ("lying.png", make_pdf(), "EXTENSION_MISMATCH"),
    ("no-extension", image("PNG"), "EXTENSION_MISMATCH"),
    ("program.pdf", b"\x7fELF\x02\x01\x01" + b"\0" * 100, "POLYGLOT_FILE"),
    ("anim.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "CONTENT_TYPE_NOT_ALLOWED"),
    ("locked.pdf", encrypted_pdf(), "ENCRYPTED_PDF"),
    ("js.pdf", pdf_with("javascript"), "ACTIVE_PDF_CONTENT"),
    ("launch.pdf", pdf_with("launch"), "ACTIVE_PDF_CONTENT"),
    ("attachment.pdf", pdf_with("embedded"), "ACTIVE_PDF_CONTENT"),
    ("bomb.docx", BOMB, "ZIP_BOMB"),
]


@pytest.mark.parametrize(("name", "data", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_files_are_refused_with_their_code(name: str, data: bytes, code: str) -> None:
    result = screen(data, name)
    assert result.code == code, (result.code, result.detail)
    assert result.message and not result.message.isascii()


def test_active_pdf_sanitized_copy_when_the_policy_says_so() -> None:
    result = screen(
        pdf_with("javascript"), "js.pdf", ScreeningPolicy(pdf_active_content="sanitize")
    )
    assert result.accepted and result.sanitized is not None
    assert "JavaScript" in result.active_content
    again = screen(result.sanitized, "clean.pdf")
    assert again.accepted and again.active_content == []


def test_signed_pdf_is_never_sanitized(dev_pki) -> None:  # type: ignore[no-untyped-def]
    from signing_service._async import run_sync
    from signing_service.settings import DEV_KEY_PASSPHRASE
    from signing_service.signing.engine import SignOptions, async_sign_pdf
    from signing_service.signing.keys import KeyCache
    from signing_service.signing.levels import SignatureLevel

    pki, _ = dev_pki
    key = KeyCache().get(f"file:{pki.p12_path('agency-a-seal')}", DEV_KEY_PASSPHRASE.encode())
    signed = run_sync(
        async_sign_pdf(pdf_with("javascript"), key, SignOptions(level=SignatureLevel.B_B))
    )
    result = screen(signed, "signed.pdf", ScreeningPolicy(pdf_active_content="sanitize"))
    assert result.signed_pdf
    assert result.code == "SIGNED_PDF_ACTIVE_CONTENT"
    assert result.sanitized is None
