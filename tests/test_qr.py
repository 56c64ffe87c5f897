"""The optional QR code (Thông tư 01/2023/TT-VPCP, ISO/IEC 18004) at the top left of page 1.

Each test renders the signed PDF with poppler's pdftoppm and decodes the symbol from the
pixels with zxing-cpp: what a phone sees, not what we meant to draw.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pikepdf
import pytest

from signing_service.services.container import Services
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot

zxingcpp = pytest.importorskip("zxingcpp")
pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing")

BASE = "https://tra-cuu.example.gov.vn/van-ban/"
DOSSIER = "000.00.12.H12-261127-0001"
DPI = 300


def auth(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}


@pytest.fixture
def public(services: Services) -> Services:
    services.settings.public_base_url = BASE
    return services


def _sign(api: Any, credentials: dict[str, Any], pdf: bytes, **form: str) -> Any:
    return api.post(
        "/v1/signatures",
        headers=auth(credentials),
        data={"profile": "agency-a-seal", "level": "B-T", **form},
        files={"file": ("quyet-dinh-123.pdf", pdf, "application/pdf")},
    )


def _decode(pdf: bytes, tmp_path: Path) -> tuple[Any, tuple[int, int]]:
    """The one QR code on page 1 as rendered, and the page image's size in pixels."""
    from PIL import Image

    source = tmp_path / "in.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        [
            "pdftoppm",
            "-cropbox",  # the page as viewers show it (the CropBox), not the whole MediaBox
            "-r",
            str(DPI),
            "-png",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(source),
            str(tmp_path / "page"),
        ],
        check=True,
    )
    image = Image.open(tmp_path / "page.png").convert("L")
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1, found
    assert found[0].format == zxingcpp.BarcodeFormat.QRCode
    return found[0], image.size


def _signed(api: Any, credentials: dict[str, Any], done: Any) -> bytes:
    assert done.status_code == 201, done.text
    content = api.get(done.json()["document"]["download_url"], headers=auth(credentials))
    return bytes(content.content)


def _verify(api: Any, pdf: bytes) -> dict[str, Any]:
    report: dict[str, Any] = api.post("/v1/verifications", files={"file": ("s.pdf", pdf)}).json()
    return report


def test_qr_carries_the_codes_and_links_to_the_document(
    api: Any, public: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    original = _centred_text_pdf()
    done = _sign(
        api,
        credentials,
        original,
        qr="true",
        dossier_code=DOSSIER,
        result_code="auto",
        procedure_code="1.001234",
        document_name="Quyết định cấp giấy phép xây dựng",
        applicant_id="001090012345",
    )
    signed = _signed(api, credentials, done)
    code, (width, height) = _decode(signed, tmp_path)
    content = json.loads(code.text)
    body = done.json()
    assert content == {
        "ma_ho_so": DOSSIER,
        "ma_thu_tuc": "1.001234",
        "ma_dinh_danh": "001090012345",
        "ten_van_ban": "Quyết định cấp giấy phép xây dựng",
        "he_thong": "signing-service",
        "thoi_gian": content["thoi_gian"],
        "lien_ket": BASE + "xac-minh/" + body["registry"]["public_id"],
    }
    # The time of issue is the signature's claimed signing time, in Vietnam time.
    assert datetime.fromisoformat(content["thoi_gian"]) == datetime.fromisoformat(body["signed_at"])
    assert content["thoi_gian"].endswith("+07:00")
    # The link names the signed document's record in the registry of issued documents: the
    # service serves it (issue 11), with the codes and the same time of issue.
    assert body["registry"]["link"] == content["lien_ket"]
    record = api.get(f"/v1/registry/{body['registry']['public_id']}").json()
    assert (record["dossier_code"], record["status"]) == (DOSSIER, "in_force")
    assert record["issued_at"] == body["signed_at"]
    # Top left of page 1 (A4), inside the page's margins: 5 mm from the edges, 18-25 mm wide.
    mm = DPI / 25.4
    xs = [p.x for p in (code.position.top_left, code.position.bottom_right)]
    ys = [p.y for p in (code.position.top_left, code.position.bottom_right)]
    assert 5 * mm < min(xs) and max(xs) < 25 * mm, code.position
    assert 5 * mm < min(ys) and max(ys) < 25 * mm, code.position
    assert abs(width - 595 / 72 * DPI) <= 1 and abs(height - 842 / 72 * DPI) <= 1  # A4
    # Added in the signing revision: the signature covers it and is intact.
    assert signed.startswith(original)
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(io.BytesIO(signed))
    assert reader.xrefs.total_revisions == 2  # the original, then QR code and signature
    assert reader.embedded_signatures[0].signed_revision == 1
    report = _verify(api, signed)
    assert report["verdict"] == "TOTAL_PASSED", report


def test_qr_without_optional_fields_names_the_file(
    api: Any, public: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    signed = _signed(api, credentials, _sign(api, credentials, make_pdf(), qr="true", level="B-B"))
    content = json.loads(_decode(signed, tmp_path)[0].text)
    assert set(content) == {"ten_van_ban", "he_thong", "thoi_gian", "lien_ket"}
    assert content["ten_van_ban"] == "quyet-dinh-123"


def _centred_text_pdf() -> bytes:
    """:func:`make_pdf` with its line moved to the middle of the page: the corners stay free
    under any /Rotate, so the symbol's place is the corner (the place next to text is
    test_qr_clear_of_the_page_text's)."""
    with pikepdf.open(io.BytesIO(make_pdf())) as pdf:
        pdf.pages[0].obj.Contents = pdf.make_stream(
            b"BT /F1 14 Tf 230 400 Td (Quyet dinh so 123/QD-UBND) Tj ET"
        )
        out = io.BytesIO()
        pdf.save(out)
        return out.getvalue()


def _reshaped(rotate: int, crop: bool) -> bytes:
    """An A4 page turned by /Rotate, or with a CropBox inset and a MediaBox whose origin is
    not 0,0: the symbol must land in the top left the reader sees."""
    with pikepdf.open(io.BytesIO(_centred_text_pdf())) as pdf:
        page = pdf.pages[0].obj
        if rotate:
            page.Rotate = rotate
        if crop:
            page.MediaBox = pikepdf.Array([-100, -50, 495, 792])
            page.CropBox = pikepdf.Array([-60, -20, 455, 760])
        out = io.BytesIO()
        pdf.save(out)
        return out.getvalue()


@pytest.mark.parametrize(
    ("rotate", "crop"),
    [(90, False), (180, False), (270, False), (0, True)],
    ids=["rotate-90", "rotate-180", "rotate-270", "cropbox-shifted-origin"],
)
def test_qr_top_left_as_displayed(
    api: Any,
    public: Services,
    credentials: dict[str, Any],
    tmp_path: Path,
    rotate: int,
    crop: bool,
) -> None:
    signed = _signed(
        api, credentials, _sign(api, credentials, _reshaped(rotate, crop), qr="true", level="B-B")
    )
    code, _size = _decode(signed, tmp_path)
    mm = DPI / 25.4
    points = [
        code.position.top_left,
        code.position.top_right,
        code.position.bottom_left,
        code.position.bottom_right,
    ]
    assert all(4 * mm < p.x < 26 * mm and 4 * mm < p.y < 26 * mm for p in points), code.position
    # Upright as displayed: the finder patterns' corner (top left) is the one nearest the
    # page's corner.
    assert code.position.top_left.x < code.position.bottom_right.x
    assert code.position.top_left.y < code.position.bottom_right.y


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        ({"qr": "true", "procedure_code": "1001234"}, 422, "INVALID_PROCEDURE_CODE"),
        ({"qr": "true", "procedure_code": "1.001234\n"}, 422, "INVALID_PROCEDURE_CODE"),
        # Another agency's suffix (agency B's code) on agency A's QR (red team issue 10, F11).
        ({"qr": "true", "procedure_code": "1.001234.000.00.31.H26"}, 422, "INVALID_PROCEDURE_CODE"),
        ({"qr": "true", "applicant_id": "00109001234"}, 422, "INVALID_APPLICANT_ID"),
        ({"qr": "true", "applicant_id": "0123456789-01"}, 422, "INVALID_APPLICANT_ID"),
        ({"procedure_code": "1.001234"}, 422, "INVALID_REQUEST"),  # without qr: not ignored
        ({"applicant_id": "001090012345"}, 422, "INVALID_REQUEST"),
        ({"document_name": "Quyết định"}, 422, "INVALID_REQUEST"),
    ],
)
def test_qr_field_refusals(
    api: Any,
    public: Services,
    credentials: dict[str, Any],
    form: dict[str, str],
    status: int,
    code: str,
) -> None:
    before = snapshot(public)
    refused = _sign(api, credentials, make_pdf(), **form)
    assert (refused.status_code, refused.json()["code"]) == (status, code), refused.text
    assert_nothing_written(before, public)


def test_qr_refused_without_public_base_url(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    assert services.settings.public_base_url is None
    before = snapshot(services)
    refused = _sign(api, credentials, make_pdf(), qr="true")
    assert (refused.status_code, refused.json()["code"]) == (422, "QR_LINK_NOT_CONFIGURED")
    assert_nothing_written(before, services)


def test_qr_refused_on_a_signed_document(
    api: Any, public: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    """New page content after a signature is a modification that breaks it: refused. The
    same document signs again without a QR code, and a QR-coded one can be countersigned."""
    once = _signed(api, credentials, _sign(api, credentials, make_pdf(), level="B-B"))
    before = snapshot(public)
    refused = _sign(api, credentials, once, qr="true")
    assert (refused.status_code, refused.json()["code"]) == (422, "QR_ON_SIGNED_DOCUMENT")
    assert_nothing_written(before, public)

    with_qr = _signed(api, credentials, _sign(api, credentials, make_pdf(), qr="true", level="B-B"))
    twice = _signed(api, credentials, _sign(api, credentials, with_qr, level="B-B"))
    report = _verify(api, twice)
    assert report["verdict"] == "TOTAL_PASSED", report
    assert len(report["signatures"]) == 2
    _decode(twice, tmp_path)  # still one readable symbol


def test_two_step_qr_links_to_the_document_stored_at_step_2(
    api: Any, public: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    """Two-step: the QR code is drawn at step 1 with the id the document gets at step 2, and
    the time of issue is step 1's claimed signing time."""
    from tests.test_external import Token

    assert public.dev_pki is not None
    started = api.post(
        "/v1/signatures/external",
        headers=auth(credentials),
        data={
            "profile": "agency-a-officer",
            "level": "B-B",
            "qr": "true",
            "dossier_code": DOSSIER,
            "procedure_code": "2.002154.000.00.12.H12",
        },
        files={
            "file": ("to-trinh.pdf", make_pdf(), "application/pdf"),
            "certificate": ("officer.pem", public.dev_pki.cert_path("officer").read_bytes()),
        },
    )
    assert started.status_code == 201, started.text
    session = started.json()
    token = Token(str(public.dev_pki.p12_path("officer")))
    try:
        signature = token.sign_digest(session["digest"])
    finally:
        token.close()
    done = api.post(
        session["complete_url"], headers=auth(credentials), json={"signature": signature}
    )
    signed = _signed(api, credentials, done)
    content = json.loads(_decode(signed, tmp_path)[0].text)
    assert content["lien_ket"] == BASE + "xac-minh/" + done.json()["registry"]["public_id"]
    assert api.get(f"/v1/registry/{done.json()['registry']['public_id']}").status_code == 200
    assert content["ma_thu_tuc"] == "2.002154.000.00.12.H12"
    assert content["ma_ho_so"] == DOSSIER
    assert datetime.fromisoformat(content["thoi_gian"]) == datetime.fromisoformat(
        done.json()["signed_at"]
    )
    assert _verify(api, signed)["verdict"] == "TOTAL_PASSED"


def test_longest_document_name_still_decodes_inside_the_margin(
    api: Any, public: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    """A 255-character Vietnamese name (the field's limit) makes the largest symbol: it grows
    to at most 25 mm (5 mm from the edge: inside the 30 mm left margin) and still decodes."""
    name = ("Quyết định về việc phê duyệt kết quả lựa chọn nhà thầu " * 5)[:255]
    done = _sign(
        api,
        credentials,
        _centred_text_pdf(),
        qr="true",
        level="B-B",
        dossier_code=DOSSIER,
        procedure_code="1.001234.000.00.12.H12",
        applicant_id="0123456789-001",
        document_name=name,
    )
    code, _size = _decode(_signed(api, credentials, done), tmp_path)
    assert json.loads(code.text)["ten_van_ban"] == name
    mm = DPI / 25.4
    corners = (code.position.top_left, code.position.bottom_right)
    assert all(5 * mm < p.x < 30 * mm and 5 * mm < p.y < 30 * mm for p in corners)


def test_qr_clear_of_the_page_text(
    api: Any, public: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    """A page whose motto starts 20 mm from the left edge at the top (like c16a, c15c): the
    QR code goes to the topmost free place of the left half, not over the motto (issue 10,
    new-user review item 3); it stays 18-25 mm and decodes."""
    import re

    from tests.support import nd30

    page = nd30.Page()
    page.text(12, 20 * nd30.MM, 842 - 14 * nd30.MM, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM")
    page.text(13, 20 * nd30.MM, 842 - 20 * nd30.MM, "Độc lập - Tự do - Hạnh phúc")
    for i in range(8):
        page.text(12, 20 * nd30.MM, 842 - (60 + 8 * i) * nd30.MM, "Nội dung văn bản " * 6)
    pdf = nd30.build([page])
    signed = _signed(api, credentials, _sign(api, credentials, pdf, qr="true", level="B-B"))
    code, _size = _decode(signed, tmp_path)
    px = 72 / DPI  # points per pixel
    xs = [p.x * px for p in (code.position.top_left, code.position.bottom_right)]
    ys = [p.y * px for p in (code.position.top_left, code.position.bottom_right)]
    side = (max(xs) - min(xs)) * 25.4 / 72
    assert 14 < side < 25, side  # the finder corners: inside the 18-25 mm symbol
    (tmp_path / "u.pdf").write_bytes(pdf)
    html = subprocess.run(
        ["pdftotext", "-bbox", str(tmp_path / "u.pdf"), "-"], capture_output=True, check=True
    ).stdout.decode()
    words = [
        tuple(float(v) for v in m)
        for m in re.findall(
            r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)"', html
        )
    ]
    assert words
    for wx1, wy1, wx2, wy2 in words:
        assert not (min(xs) < wx2 and wx1 < max(xs) and min(ys) < wy2 and wy1 < max(ys)), (
            (xs, ys),
            (wx1, wy1, wx2, wy2),
        )
    assert max(xs) < 595 / 2, "left half"
