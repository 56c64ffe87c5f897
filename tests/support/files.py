"""The screening corpus, built by the tests themselves: valid files of every allowed type and
every kind of hostile file the storage issue names."""

from __future__ import annotations

import io
import struct
import zipfile

import pikepdf
from PIL import Image

from signing_service.screening import DOCX, JPEG, ODT, PDF, PNG, TIFF, XLSX, XML
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


def payload_zip(comment: bytes = b"") -> bytes:
    """A stored ZIP holding a Windows program, as an attacker would carry it."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("payload.exe", b"MZ" + b"\x90" * 200)
        z.comment = comment
    return out.getvalue()


def zip_after_pdf(pdf: bytes, archive: bytes) -> bytes:
    """``pdf`` followed by ``archive`` with its central directory's offsets moved by the PDF's
    length, so that any ZIP reader opens it (red team 21b R21B-4)."""
    out = bytearray(pdf + archive)
    end = out.rfind(b"PK\x05\x06")
    (cd_offset,) = struct.unpack("<I", out[end + 16 : end + 20])
    out[end + 16 : end + 20] = struct.pack("<I", cd_offset + len(pdf))
    position = cd_offset + len(pdf)
    while out[position : position + 4] == b"PK\x01\x02":
        name, extra, comment = struct.unpack("<HHH", out[position + 28 : position + 34])
        (local,) = struct.unpack("<I", out[position + 42 : position + 46])
        out[position + 42 : position + 46] = struct.pack("<I", local + len(pdf))
        position += 46 + name + extra + comment
    return bytes(out)


def between_objects(pdf: bytes, foreign: bytes) -> bytes:
    """``foreign`` bytes put between the PDF's header and its first object (qpdf finds the
    objects again by scanning: pikepdf still opens the file)."""
    at = pdf.index(b"1 0 obj")
    return pdf[:at] + foreign + b"\n" + pdf[at:]


# A PDF whose ZIP's comment ends in %%EOF: nothing follows the last %%EOF (R21B-4).
PDF_ZIP_EOF_COMMENT = zip_after_pdf(make_pdf(), payload_zip(b"\n%%EOF\n"))


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


BOMB = office("docx", {"word/media/padding.bin": b"\0" * (64 * 1024 * 1024)})

HOSTILE = [
    ("empty.pdf", b"", "EMPTY_FILE"),
    ("setup.pdf", b"MZ\x90\x00\x03" + b"\0" * 200, "POLYGLOT_FILE"),
    ("html-then-pdf.pdf", b"<html><script>alert(1)</script>\n" + make_pdf(), "POLYGLOT_FILE"),
    ("pdf-then-zip.pdf", make_pdf() + office("docx"), "POLYGLOT_FILE"),
    ("pdf-zip-eof-comment.pdf", PDF_ZIP_EOF_COMMENT, "POLYGLOT_FILE"),
    ("pdf-zip-between-objects.pdf", between_objects(make_pdf(), payload_zip()), "POLYGLOT_FILE"),
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
