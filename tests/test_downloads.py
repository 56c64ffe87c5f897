"""Downloads keep the uploaded file's Vietnamese name (RFC 6266 / RFC 8187): it came back as
"quy?t-??nh.signed.pdf" (red team 15b, R7), with any path the client sent."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest

from signing_service.api.downloads import attachment_disposition
from tests.support.pdfs import make_pdf


def _names(header: str) -> tuple[str, str]:
    """(filename, filename*) of the header, ``filename*`` decoded as RFC 8187 says."""
    kind, *params = [part.strip() for part in header.split(";")]
    assert kind == "attachment"
    values = dict(param.split("=", 1) for param in params)
    plain = values["filename"]
    assert plain.startswith('"') and plain.endswith('"')
    charset, _, encoded = values["filename*"].partition("''")
    assert charset == "UTF-8"
    return plain[1:-1], unquote(encoded, encoding="utf-8", errors="strict")


@pytest.mark.parametrize(
    ("uploaded", "fallback", "name"),
    [
        ("quyết-định.pdf", "quyet-dinh.pdf", "quyết-định.pdf"),
        ("Đơn đề nghị.pdf", "Don de nghi.pdf", "Đơn đề nghị.pdf"),
        ("C:\\hồ sơ\\tờ trình.pdf", "to trinh.pdf", "tờ trình.pdf"),
        ('../../a"b.pdf', "ab.pdf", "ab.pdf"),
        ("\x00\r\n", "tai-lieu.pdf", "tai-lieu.pdf"),
        (None, "tai-lieu.pdf", "tai-lieu.pdf"),
    ],
)
def test_the_header_carries_the_name_and_an_ascii_fallback(
    uploaded: str | None, fallback: str, name: str
) -> None:
    header = attachment_disposition(uploaded)
    assert header.isascii() and "\r" not in header and "\n" not in header
    assert _names(header) == (fallback, name)


def test_a_signed_document_downloads_under_its_vietnamese_name(
    api: Any, credentials: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    signed = api.post(
        "/v1/signatures",
        headers=headers,
        data={"profile": "agency-a-seal", "level": "B-B"},
        files={"file": ("quyết-định số 12.pdf", make_pdf(), "application/pdf")},
    )
    assert signed.status_code == 201, signed.text
    download = api.get(signed.json()["document"]["download_url"], headers=headers)
    assert download.status_code == 200
    plain, star = _names(download.headers["Content-Disposition"])
    assert star.startswith("quyết-định số 12") and star.endswith(".pdf"), star
    assert plain.isascii() and plain.startswith("quyet-dinh so 12"), plain
