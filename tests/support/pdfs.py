"""PDFs the tests build themselves."""

from __future__ import annotations

import io
import os

import pikepdf


def make_pdf(
    text: str = "Quyet dinh so 123/QD-UBND",
    pages: int = 1,
    padding_bytes: int = 0,
    extra_stream: bytes | None = None,
) -> bytes:
    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
        )
    )
    for n in range(pages):
        page = pdf.add_blank_page(page_size=(595, 842))
        page.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
        content = f"BT /F1 14 Tf 72 760 Td ({text} - trang {n + 1}) Tj ET".encode()
        page.Contents = pdf.make_stream(content)
    if padding_bytes:
        # Incompressible payload (like a scanned image) to reach a realistic size.
        pdf.Root.Padding = pdf.make_stream(os.urandom(padding_bytes))
    if extra_stream is not None:
        pdf.Root.Extra = pdf.make_stream(extra_stream)
    out = io.BytesIO()
    pdf.save(out, compress_streams=False)
    return out.getvalue()


def encrypted_pdf(user_password: str = "matkhau") -> bytes:
    pdf = pikepdf.open(io.BytesIO(make_pdf()))
    out = io.BytesIO()
    pdf.save(out, encryption=pikepdf.Encryption(user=user_password, owner="chu-so-huu"))
    return out.getvalue()


def raw_pdf(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF written byte for byte from ``objects`` (object ``i + 1`` is ``objects[i]``, the
    text between ``obj`` and ``endobj``), with a classic xref table: for inputs the writers of
    pikepdf and pyHanko would normalise (nesting past a parser's limit, odd spellings)."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, root, xref)
    )
    return out.getvalue()
