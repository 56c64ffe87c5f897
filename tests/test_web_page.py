"""The citizen's verification page over HTTP (the real application, the dev PKI on loopback,
SQLite): every answer is a Vietnamese page with the right status and security headers, every
bad input of issue 11 is answered on the page, never JSON, a stack trace or a blank page.
The browser tests (tests/test_web_browser.py) drive the same pages in Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from signing_service.api.app import create_app
from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from tests.conftest import make_settings
from tests.support.hostile import deep_nesting, signed_with_bomb_update
from tests.support.pdfs import encrypted_pdf, make_pdf

PAGE_BUDGET = 60 * 1024
MARKER = b"Giay xac nhan so 42"


def build(tmp_path: Path, dev_pki: tuple[DevPki, int], **overrides: Any) -> Services:
    return Services.build(
        make_settings(tmp_path, f"sqlite:///{tmp_path / 'metadata.db'}", dev_pki, **overrides)
    )


@pytest.fixture
def site(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> Iterator[tuple[TestClient, Services]]:
    services = build(tmp_path, dev_pki)
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield client, services
    services.close()


def agency(services: Services) -> dict[str, str]:
    credentials = json.loads(services.settings.dev_credentials_file.read_text())
    return {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}


def signed_pdf(
    client: TestClient, services: Services, text: str = "Giay xac nhan so 42"
) -> tuple[bytes, str]:
    """A document the service signs through its API with the dev agency's seal, and its
    public id in the registry."""
    headers = agency(services)
    response = client.post(
        "/v1/signatures",
        headers=headers,
        data={"profile": "agency-a-seal", "level": "B-T"},
        files={"file": ("giay-xac-nhan.pdf", make_pdf(text), "application/pdf")},
    )
    assert response.status_code in (200, 201), response.text
    body = response.json()
    content = client.get(body["document"]["download_url"], headers=headers)
    assert content.status_code == 200
    return content.content, body["registry"]["public_id"]


def post(client: TestClient, data: bytes, name: str = "tep.pdf", **fields: str) -> Any:
    return client.post("/xac-minh", data=fields, files={"file": (name, data, "application/pdf")})


def assert_page(response: Any, status: int) -> str:
    """A Vietnamese HTML page with ``status`` and the page's security headers; its text."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="vi">' in html
    assert "Traceback" not in html and "INTERNAL_ERROR" not in html
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    # No inline script, no third-party origin anywhere.
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    return html


def assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


def test_form_page(site: tuple[TestClient, Services]) -> None:
    client, services = site
    settings = services.settings
    mb = 1024 * 1024
    for path in ("/", "/xac-minh"):
        html = assert_page(client.get(path), 200)
        assert "<h1>Xác minh văn bản điện tử</h1>" in html
        # Our own Vietnamese label opens the picker; the native control (its text in the
        # browser's language) is visually hidden.
        assert '<label for="tep" class="pick">' in html and "Chọn tệp PDF</span>" in html
        assert 'id="tep" class="file-input"' in html
        assert 'enctype="multipart/form-data"' in html
        # The limit the page states is the real one, and as the README explains it: the
        # national exchange limit plus the room signatures take (new user 10).
        assert f"Tệp PDF tối đa {settings.max_document_bytes // mb} MB" in html
        assert f"văn bản đến {settings.max_upload_bytes // mb} MB" in html
    total = len(client.get("/").content)
    for url in assets(html):
        response = client.get(url)
        assert response.status_code == 200
        assert "max-age" in response.headers["cache-control"]
        assert response.headers["x-content-type-options"] == "nosniff"
        total += len(response.content)
    assert total <= PAGE_BUDGET, total
    # Compressed for browsers that accept it; the API's answers are left as they are.
    compressed = client.get("/xac-minh", headers={"Accept-Encoding": "gzip"})
    assert compressed.headers["content-encoding"] == "gzip"
    assert compressed.headers["content-security-policy"]
    assert "content-encoding" not in client.get("/openapi.json").headers


def test_valid_tampered_unsigned(site: tuple[TestClient, Services]) -> None:
    client, services = site
    signed, _ = signed_pdf(client, services)
    html = assert_page(post(client, signed, "giay-xac-nhan.pdf"), 200)
    assert 'class="state-label">Hợp lệ<' in html
    assert "Sở Tư pháp tỉnh Demo A" in html
    assert "(giờ Việt Nam)" in html
    assert "Được chứng minh bằng dấu thời gian" in html
    assert "Vì sao điều này quan trọng" in html
    assert "<details" in html and "Chi tiết kỹ thuật" in html
    assert "giay-xac-nhan.pdf" in html
    # The registry: the service issued it and it is in force.
    assert "Sổ đăng ký văn bản của dịch vụ" in html
    assert "Đây đúng là văn bản" in html and "đang có hiệu lực" in html

    # The sealed PDF report of this result, without uploading again (the dev PKI's seal).
    link = re.search(r'href="(/xac-minh/bao-cao/[A-Za-z0-9_-]{32}\.pdf)"', html)
    assert link and "Tải báo cáo PDF" in html
    report = client.get(link.group(1))
    assert report.status_code == 200, report.text[:300]
    assert report.headers["content-type"] == "application/pdf"
    assert report.content.startswith(b"%PDF-")
    assert "attachment" in report.headers["content-disposition"]
    assert report.headers["cache-control"] == "no-store"

    tampered = signed.replace(MARKER, b"Giay xac nhan so 99", 1)
    assert tampered != signed
    html = assert_page(post(client, tampered), 200)
    assert 'class="state-label">Không hợp lệ<' in html
    assert "Nội dung đã bị thay đổi sau khi ký" in html
    # Not found in the registry, and no "not an error" comfort on an altered file (new user 4).
    assert "Không tìm thấy tệp này trong sổ đăng ký" in html
    assert "không phải là lỗi" not in html
    # No check line contradicts the failed integrity (new user 5).
    assert "nội dung không đổi" not in html and "Không đánh giá" in html

    html = assert_page(post(client, make_pdf()), 200)
    assert 'class="state-label">Chưa xác định được<' in html
    assert "không có chữ ký số" in html


@pytest.mark.parametrize(
    ("data", "status", "text"),
    [
        (b"", 422, "Tệp rỗng."),
        (b"Day khong phai PDF", 422, "Tệp không phải là tài liệu PDF."),
        (encrypted_pdf(), 422, "mật khẩu"),
        (b"%PDF-1.7\n" + b"1 0 obj\n<< /A [" * 3 + b"broken", 422, "bị hỏng"),
    ],
    ids=["empty", "not-pdf", "encrypted", "truncated"],
)
def test_bad_files_answered_on_the_page(
    site: tuple[TestClient, Services], data: bytes, status: int, text: str
) -> None:
    client, _ = site
    html = assert_page(post(client, data), status)
    assert text in html
    # The error is linked to the input it concerns (WCAG 3.3.1).
    assert 'aria-describedby="tep-da-chon tep-goi-y tep-loi"' in html and 'id="tep-loi"' in html
    assert 'aria-invalid="true"' in html


def test_hostile_file(site: tuple[TestClient, Services]) -> None:
    client, services = site
    # A signed document with a decompression bomb appended: a result, in words.
    signed, _ = signed_pdf(client, services)
    html = assert_page(post(client, signed_with_bomb_update(signed)), 200)
    assert 'class="state-label">Không hợp lệ<' in html
    assert "tệp chứa dữ liệu nén bất thường (dấu hiệu tệp được tạo ra để tấn công)" in html
    # Nesting deep enough to overflow a naive parser.
    response = post(client, deep_nesting(100_000))
    assert response.status_code in (200, 422)
    html = assert_page(response, response.status_code)
    assert ("Không hợp lệ" in html) or ("Không xác minh được" in html)


def test_no_file_and_malformed_requests(site: tuple[TestClient, Services]) -> None:
    client, _ = site
    html = assert_page(client.post("/xac-minh", data={"x": "1"}), 422)
    assert "Bạn chưa chọn tệp PDF nào." in html
    # What a browser sends when the file input is left empty (no JavaScript).
    html = assert_page(
        client.post("/xac-minh", files={"file": ("", b"", "application/octet-stream")}), 422
    )
    assert "Bạn chưa chọn tệp PDF nào." in html
    html = assert_page(
        client.post(
            "/xac-minh",
            content=b"--x\r\nbroken",
            headers={"Content-Type": "multipart/form-data"},  # no boundary
        ),
        400,
    )
    assert "Yêu cầu không hợp lệ" in html


def test_over_the_limit(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> None:
    services = build(tmp_path, dev_pki, max_upload_bytes=100_000, signing_headroom_bytes=50_000)
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        # Read, then refused by size.
        html = assert_page(post(client, make_pdf(padding_bytes=160_000)), 413)
        assert "vượt quá dung lượng" in html
        # Refused from Content-Length before the body is read: the edge's JSON made a page.
        html = assert_page(post(client, make_pdf(padding_bytes=400_000)), 413)
        assert "vượt quá dung lượng" in html and "FILE_TOO_LARGE" in html

        # Chunked, no Content-Length, past the limit while it arrives.
        def chunks() -> Iterator[bytes]:
            yield (
                b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.pdf"\r\n'
                b"Content-Type: application/pdf\r\n\r\n%PDF-1.7\n"
            )
            for _ in range(20):
                yield b"0" * 16384
            yield b"\r\n--b--\r\n"

        response = client.post(
            "/xac-minh",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        html = assert_page(response, 413)
        assert "vượt quá dung lượng" in html
    services.close()


def test_not_found_pages(site: tuple[TestClient, Services]) -> None:
    client, _ = site
    for path in (
        "/xac-minh/khong-dung-dinh-dang",
        "/xac-minh/" + "a" * 26,  # well formed, unknown
        "/xac-minh/%3Cscript%3E",
        "/xac-minh/a/b",
        "/xac-minh/bao-cao/" + "A" * 32 + ".pdf",
        "/static/khong-co.css",
    ):
        html = assert_page(client.get(path), 404)
        assert "Không tìm thấy" in html or "hết hạn" in html, path
        assert "Mã lỗi để báo bộ phận hỗ trợ" in html, path
        assert "<script>" not in html
    # The API keeps its JSON.
    response = client.get("/v1/khong-co")
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"
    assert "content-security-policy" not in response.headers


def test_rate_limited_page(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> None:
    services = build(tmp_path, dev_pki, public_rate_per_minute=1, public_rate_burst=1)
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        assert_page(post(client, make_pdf()), 200)
        response = post(client, make_pdf())
        html = assert_page(response, 429)
        seconds = int(response.headers["retry-after"])
        # Plain Vietnamese with the wait in seconds; no header name shown to a citizen (F7).
        assert f"vui lòng thử lại sau {seconds} giây." in html
        assert "Bạn đã gửi nhiều tệp trong thời gian ngắn" in html
        assert "Retry-After" not in html and "HTTP 429" not in html
        # The form is right there to try again.
        assert 'id="tep"' in html
    services.close()


def test_registry_record_revoked_and_superseded(site: tuple[TestClient, Services]) -> None:
    client, services = site
    old, old_id = signed_pdf(client, services, "Giay xac nhan so 42")
    new, new_id = signed_pdf(client, services, "Giay xac nhan so 43")
    other, _ = signed_pdf(client, services, "Giay xac nhan so 44")

    # The QR link: the record, and the form to compare the file the citizen holds.
    html = assert_page(client.get(f"/xac-minh/{old_id}"), 200)
    assert "Đang có hiệu lực" in html and "Sở Tư pháp tỉnh Demo A" in html
    assert f'name="ma" value="{old_id}"' in html
    assert re.search(r"Tệp PDF tối đa \d+ MB", html)
    # The record alone claims nothing about a file not yet compared.
    assert "Văn bản do Sở Tư pháp tỉnh Demo A cấp qua dịch vụ này" in html
    assert "Đây đúng là văn bản" not in html
    html = assert_page(post(client, old, ma=old_id), 200)
    assert "đúng là văn bản mà mã QR này chỉ tới" in html
    assert html.count("đúng là văn bản mà mã QR này chỉ tới") == 1  # once (new user 22 #8)
    html = assert_page(post(client, other, ma=old_id), 200)
    assert "KHÔNG phải văn bản mà mã QR này chỉ tới" in html
    assert 'class="state-label">Không hợp lệ<' in html
    # The record the QR names is shown next to the other file's; the lead does not call the
    # other file "đúng là văn bản … đang có hiệu lực" (new user 3).
    assert "Văn bản mà mã QR chỉ tới" in html and "Tệp bạn tải lên trong sổ đăng ký" in html
    lead = re.search(r'<h1 class="lead">(.*?)</h1>', html, re.S)
    assert lead and "Đây đúng là văn bản" not in lead.group(1)
    assert html.count(f'<code class="id">{old_id}</code>') == 1
    # A bad file on the QR page: the error on the same record page.
    html = assert_page(post(client, b"khong phai PDF", ma=old_id), 422)
    assert "Tệp không phải là tài liệu PDF." in html and f'name="ma" value="{old_id}"' in html

    response = client.post(
        f"/v1/registered-documents/{old_id}/supersede",
        headers=agency(services),
        json={"superseded_by": new_id, "reason": "Đính chính ngày cấp"},
    )
    assert response.status_code == 200, response.text
    html = assert_page(post(client, old), 200)
    assert 'class="state-label">Không hợp lệ<' in html
    assert "Chữ ký số hợp lệ, nhưng văn bản này đã được thay thế" in html
    assert f'href="/xac-minh/{new_id}"' in html and "Đính chính ngày cấp" in html
    html = assert_page(client.get(f"/xac-minh/{old_id}"), 200)
    assert "Đã được thay thế bằng văn bản khác" in html

    response = client.post(
        f"/v1/registered-documents/{new_id}/revoke",
        headers=agency(services),
        json={"reason": "Cấp nhầm người nhận"},
    )
    assert response.status_code == 200, response.text
    html = assert_page(post(client, new), 200)
    assert 'class="state-label">Không hợp lệ<' in html
    assert "đã thu hồi văn bản này" in html and "Cấp nhầm người nhận" in html


def test_hostile_file_name_is_shown_as_text(site: tuple[TestClient, Services]) -> None:
    client, _ = site
    name = "<img src=x onerror=alert(1)>\u202egpj.pdf"
    html = assert_page(post(client, make_pdf(), name), 200)
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # A bidirectional override is shown escaped, never reordering what follows.
    assert "\u202e" not in html and "\\u202e" in html


def test_no_report_button_without_a_report_seal(tmp_path: Path) -> None:
    """Production without SIGNING_SERVICE_REPORT_SEAL_KEY: the result has no "Tải báo cáo
    PDF" (the report could not be sealed), the rest of the page works."""
    from signing_service.settings import Settings

    settings = Settings(
        mode="production",
        data_dir=tmp_path / "prod",
        key_passphrase="s3cret-prod",
        database_url=f"sqlite:///{tmp_path}/prod.db",
        audit_key="production-audit-key-0123456789abcdef0123456789",
        verification_processes=0,
        public_rate_per_minute=0,
    )
    services = Services.build(settings)
    try:
        with TestClient(create_app(services), raise_server_exceptions=False) as client:
            html = assert_page(post(client, make_pdf()), 200)
            assert 'class="state-label">Chưa xác định được<' in html
            assert "Tải báo cáo PDF" not in html and "/xac-minh/bao-cao/" not in html
    finally:
        services.close()


def test_wrong_method_and_head(site: tuple[TestClient, Services]) -> None:
    """Red team F6: a wrong method gets a page that says so (not "page not found"); HEAD on
    the page and on a QR link answers 200 without a body (link checkers, chat previews)."""
    client, services = site
    _, public_id = signed_pdf(client, services)
    for method, path in (("PUT", "/xac-minh"), ("DELETE", "/"), ("PUT", f"/xac-minh/{public_id}")):
        html = assert_page(client.request(method, path), 405)
        assert "<title>Trang không hỗ trợ thao tác này" in html, (method, path)
        assert "Không tìm thấy trang" not in html
        assert "METHOD_NOT_ALLOWED" in html and "thao tác không được hỗ trợ" in html
    for path in ("/", "/xac-minh", f"/xac-minh/{public_id}"):
        response = client.head(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.content == b""
    assert client.head("/xac-minh/" + "a" * 26).status_code == 404


def test_two_files_at_once_are_refused_clearly(site: tuple[TestClient, Services]) -> None:
    """Red team F14 without JavaScript: two files in one form post are answered with what
    went wrong, on the form, not "invalid request"."""
    client, _ = site
    response = client.post(
        "/xac-minh",
        files=[
            ("file", ("a.pdf", make_pdf("A"), "application/pdf")),
            ("file", ("b.pdf", make_pdf("B"), "application/pdf")),
        ],
    )
    html = assert_page(response, 400)
    assert "Mỗi lần chỉ xác minh được một tệp PDF" in html
    assert "Yêu cầu không hợp lệ" not in html
    assert 'aria-invalid="true"' in html and 'id="tep-loi"' in html


def _main(html: str) -> str:
    """The text of the page's <main>, tags removed, whitespace collapsed."""
    import html as html_lib

    main = html.split("<main", 1)[-1].split("</main>", 1)[0]
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", main)))


def test_result_words_a_citizen_reads(site: tuple[TestClient, Services]) -> None:
    """New user 6, 7, 8: test certificates said in the lead and next to the recognised-issuer
    check; the technical detail in Vietnamese with each code explained, people's dates, the
    test root's "(thử nghiệm)" once; the registry box does not repeat the lead."""
    client, services = site
    signed, _ = signed_pdf(client, services)
    html = assert_page(post(client, signed), 200)
    text = _main(html)
    lead = _main(re.search(r'<h1 class="lead">.*?</h1>', html, re.S).group(0))  # type: ignore[union-attr]
    assert "chứng thư số thử nghiệm nên không có giá trị pháp lý" in lead
    assert "Chứng thư số do đơn vị được công nhận cấp: Đạt (môi trường thử nghiệm)." in text
    assert "Chứng thư số do đơn vị được công nhận cấp: Đạt. " not in text
    # Said once: the registry box carries the status, not the lead's sentence again.
    assert text.count("Đây đúng là văn bản Sở Tư pháp tỉnh Demo A") == 1
    # Technical detail: no raw ISO time, words next to each code, no doubled kind.
    assert not re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:", text), re.findall(
        r"\S*\d{4}-\d\d-\d\dT\S*", text
    )
    assert "(thử nghiệm) (thử nghiệm)" not in text
    assert "hợp lệ ( TOTAL_PASSED )" in text
    assert "Dấu thời gian của chữ ký: " in text and "signature:" not in text
    assert "chưa bị thu hồi ( good )" in text
    assert re.search(r"Phạm vi được ký toàn bộ (tệp|tài liệu như lúc ký) \( ENTIRE_\w+ \)", text)
    assert "Nội dung còn nguyên vẹn: Đạt ( PASSED , INTACT )" in text
    assert "vùng ký" not in text and "sha256 / –" not in text


def test_agency_text_cannot_reorder_the_page(site: tuple[TestClient, Services]) -> None:
    """Red team F11: an agency's revocation reason with a right-to-left override or a
    zero-width space is shown with the control visible, isolated (<bdi>), never interpreted."""
    client, services = site
    signed, public_id = signed_pdf(client, services)
    response = client.post(
        f"/v1/registered-documents/{public_id}/revoke",
        headers=agency(services),
        json={"reason": "Cấp nhầm \u202eevil\u200bx"},
    )
    assert response.status_code == 200, response.text
    for html in (
        assert_page(post(client, signed), 200),
        assert_page(client.get(f"/xac-minh/{public_id}"), 200),
    ):
        assert "\u202e" not in html and "\u200b" not in html
        assert "<bdi>Cấp nhầm \\u202eevil\\u200bx</bdi>" in html


def test_earlier_version_names_the_newer_one(site: tuple[TestClient, Services]) -> None:
    """New user 12 item 8: the B-T file after the service extended it to B-LT verified on the
    page and in the API's ``status.message`` with no word of the newer version (only JSON
    ``newer_version: true``). Both now say it, with the record's link; the state stays."""
    client, services = site
    headers = agency(services)
    response = client.post(
        "/v1/signatures",
        headers=headers,
        data={"profile": "agency-a-seal", "level": "B-T"},
        files={"file": ("giay.pdf", make_pdf("Giay xac nhan so 77"), "application/pdf")},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    v1 = client.get(body["document"]["download_url"], headers=headers).content
    public_id = body["registry"]["public_id"]
    extended = client.post(
        f"/v1/documents/{body['document']['id']}/extensions",
        headers=headers,
        json={"level": "B-LT"},
    )
    assert extended.status_code == 201, extended.text

    api = client.post("/v1/verifications", files={"file": ("v1.pdf", v1, "application/pdf")})
    assert api.status_code == 200, api.text
    report = api.json()
    assert report["registry"]["newer_version"] is True
    assert report["status"]["code"] == "IN_FORCE" and report["status"]["state"] == "valid"
    assert "phiên bản mới hơn" in report["status"]["message"]

    html = assert_page(post(client, v1), 200)
    assert 'class="state-label">Hợp lệ<' in html
    assert "Đã có phiên bản mới hơn" in html
    assert f'href="/xac-minh/{public_id}">Xem phiên bản mới nhất</a>' in html
