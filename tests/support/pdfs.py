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
