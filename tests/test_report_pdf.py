"""The printable verification report (issue 11 item 4): ``POST /v1/verifications`` with
``?format=pdf`` or ``Accept: application/pdf`` answers an A4 Vietnamese PDF, fonts embedded,
sealed by the service (PAdES B-T) so that our own verifier says ``TOTAL_PASSED`` and names the
service's seal; text from the verified PDF never becomes markup; production without a report
seal answers ``REPORT_NOT_CONFIGURED``."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing_service.api.app import create_app
from signing_service.pki.dev import SERVICE_SEAL, DevPki
from signing_service.services.container import Services
from signing_service.services.keys import disable_key
from signing_service.settings import Settings
from tests.conftest import make_settings
from tests.support.duties import issue_under_dev
from tests.support.pdfs import make_pdf

POPPLER = shutil.which("pdftotext") and shutil.which("pdffonts")
needs_poppler = pytest.mark.skipif(
    not POPPLER, reason="poppler-utils not installed (make test installs it)"
)
AUDIT_KEY = "production-audit-key-0123456789abcdef0123456789"


def _services(tmp_path: Path, dev_pki: tuple[DevPki, int], **overrides: Any) -> Services:
    # One database is enough here: the report reads nothing of its own from it.
    return Services.build(
        make_settings(
            tmp_path,
            f"sqlite:///{tmp_path / 'metadata.db'}",
            dev_pki,
            verification_processes=0,
            **overrides,
        )
    )


@pytest.fixture
def services(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> Iterator[Services]:
    built = _services(tmp_path, dev_pki)
    yield built
    built.close()


@pytest.fixture
def api(services: Services) -> Iterator[Any]:
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield client


def _headers(services: Services) -> dict[str, str]:
    credentials = json.loads(services.settings.dev_credentials_file.read_text())
    return {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}


def _signed_by_agency(api: Any, services: Services, *, revoke_with: str | None = None) -> bytes:
    headers = _headers(services)
    answer = api.post(
        "/v1/signatures",
        headers=headers,
        data={
            "profile": "agency-a-seal",
            "level": "B-T",
            "dossier_code": "000.00.12.H12-261127-0001",
        },
        files={"file": ("quyet-dinh.pdf", make_pdf(), "application/pdf")},
    )
    assert answer.status_code == 201, answer.text
    if revoke_with is not None:
        public_id = answer.json()["registry"]["public_id"]
        revoked = api.post(
            f"/v1/registered-documents/{public_id}/revoke",
            headers=headers,
            json={"reason": revoke_with},
        )
        assert revoked.status_code == 200, revoked.text
    content = api.get(answer.json()["document"]["download_url"], headers=headers)
    assert content.status_code == 200
    return bytes(content.content)


def _pdf_report(api: Any, data: bytes, name: str = "quyết định số 12.pdf", **kw: Any) -> Any:
    return api.post("/v1/verifications", files={"file": (name, data, "application/pdf")}, **kw)


def _text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "bao-cao.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        ["pdftotext", "-layout", "-enc", "UTF-8", str(path), "-"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    # poppler reads the report without complaint (typst's /MarkInfo /Suspects made it print
    # "Syntax Error: Suspects object is wrong type" on every report: new user 12).
    assert out.stderr == b"", out.stderr
    return out.stdout.decode("utf-8")


def _pages(text: str) -> int:
    # pdftotext ends each page with a form feed.
    return text.count("\f")


# English that once reached the report (new user 14): as whole words, the codes of the
# technical appendix (TOTAL_PASSED, INTACT…) stay allowed.
ENGLISH = re.compile(
    r"\b(signing-service|document|fetched|signature|good|PASSED)\b(?![_A-Z])", re.IGNORECASE
)


def _fonts(pdf: bytes, tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "fonts.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        ["pdffonts", str(path)], capture_output=True, check=True, text=True, timeout=60
    )
    return [line.split() for line in out.stdout.splitlines()[2:] if line.strip()]


def _verify(api: Any, pdf: bytes) -> dict[str, Any]:
    answer = _pdf_report(api, pdf, name="bao-cao.pdf")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    report: dict[str, Any] = answer.json()
    return report


@needs_poppler
def test_the_pdf_report_is_vietnamese_embedded_and_sealed_by_the_service(
    api: Any, services: Services, tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    signed = _signed_by_agency(api, services)
    digest = hashlib.sha256(signed).hexdigest()
    answer = _pdf_report(api, signed, params={"format": "pdf"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="bao-cao-xac-minh-{digest[:16]}.pdf"'
    )
    assert "Accept" in answer.headers["vary"]
    pdf = answer.content
    assert pdf.startswith(b"%PDF-")

    text = _text(pdf, tmp_path)
    flat = re.sub(r"\s+", " ", text)
    # Vietnamese comes out as Vietnamese (not þÿ… or boxes): title, state, signer, time.
    for expected in (
        "BÁO CÁO KẾT QUẢ XÁC MINH CHỮ KÝ SỐ",
        "Kết quả: Hợp lệ",
        "Sở Tư pháp tỉnh Demo A",
        "Chữ ký số của cơ quan, tổ chức (con dấu số)",
        "(giờ Việt Nam)",
        "Những gì đã được kiểm tra",
        "Nội dung còn nguyên vẹn",
        "quyết định số 12.pdf",
        digest,
        # SIGNING_SERVICE_ISSUING_SYSTEM left at its default: a Vietnamese name, not the
        # project's English one.
        "Hệ thống xác minh Dịch vụ xác minh chữ ký số",
        # The technical appendix in Vietnamese labels, its codes in brackets.
        "Toàn vẹn nội dung: đạt (INTACT)",
        # The registry section: the service issued this file.
        "Đối chiếu với sổ đăng ký văn bản đã ban hành",
        "000.00.12.H12-261127-0001",
    ):
        assert expected in flat, expected
    assert not ENGLISH.search(re.sub(r"\([A-Za-z_]+\)", "", flat)), ENGLISH.findall(flat)
    # The page's words ("trang này": this web page) never in the PDF.
    assert "trang này" not in flat
    # One signature: at most two A4 pages, no heading left alone at a page's foot.
    assert _pages(text) <= 2, _pages(text)
    for page in text.split("\f"):
        lines = [line.strip() for line in page.splitlines() if line.strip()]
        # The last lines of a page: the footer, and before it never a bare section label.
        body = [line for line in lines if "báo cáo xác minh tệp SHA-256" not in line]
        assert not body or body[-1] not in (
            "Những gì đã được kiểm tra",
            "Chi tiết kỹ thuật",
            "Điều cần lưu ý",
        ), page
    # A4 (595 × 842 pt), every font embedded.
    assert re.search(rb"/MediaBox\s*\[\s*0\s+0\s+595\.27\d*\s+841\.8\d*\s*\]", pdf)
    fonts = _fonts(pdf, tmp_path)
    assert fonts and all(row[-5] == "yes" for row in fonts), fonts

    report = _verify(api, pdf)
    assert report["verdict"] == "TOTAL_PASSED", report
    [seal] = report["signatures"]
    pki, _ = dev_pki
    assert seal["signer"]["certificate_sha256"] == pki.cert(SERVICE_SEAL).sha256.hex()
    assert seal["level"] == "B-T"
    assert seal["checks"]["timestamp"]["status"] == "PASSED"
    assert seal["checks"]["modifications"]["status"] == "PASSED"
    # The report itself was never issued through the registry: not an error.
    assert report["registry"] == {"found": False}


@needs_poppler
def test_a_revoked_document_is_reported_revoked(
    api: Any, services: Services, tmp_path: Path
) -> None:
    """Validly signed, revoked in the registry: the report leads with it, with the reason the
    agency gave (its text shown verbatim)."""
    reason = "Bị hủy bỏ theo Quyết định số 45/QĐ-STP #emph[x]"
    signed = _signed_by_agency(api, services, revoke_with=reason)
    answer = _pdf_report(api, signed, params={"format": "pdf"})
    assert answer.status_code == 200, answer.text
    flat = re.sub(r"\s+", " ", _text(answer.content, tmp_path))
    for expected in ("Kết quả: Không hợp lệ", "Đã bị thu hồi", reason, "đã thu hồi văn bản này"):
        assert expected in flat, expected
    # The signatures' technical verdict still TOTAL_PASSED: the report says why the overall
    # state differs (new user 16).
    assert "Kết luận kỹ thuật về chữ ký số hợp lệ (TOTAL_PASSED)" in flat
    assert "Kết luận kỹ thuật chỉ xét chữ ký số" in flat and "thu hồi hoặc thay thế" in flat


def test_accept_header_chooses_and_unknown_format_is_refused(api: Any, services: Services) -> None:
    pdf = make_pdf()  # unsigned: the report says so, it is still a report
    for accept in ("application/pdf", "application/json;q=0.5, application/pdf"):
        answer = _pdf_report(api, pdf, headers={"Accept": accept})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/pdf", accept
    for accept in ("*/*", "application/json", "application/pdf;q=0", "text/html,*/*;q=0.8"):
        answer = _pdf_report(api, pdf, headers={"Accept": accept})
        assert answer.headers["content-type"] == "application/json", accept
        assert answer.json()["verdict"] == "NO_SIGNATURE"
    # format= decides over Accept.
    answer = _pdf_report(api, pdf, params={"format": "json"}, headers={"Accept": "application/pdf"})
    assert answer.headers["content-type"] == "application/json"
    for bad in ("xml", "PDFX", ""):
        answer = _pdf_report(api, pdf, params={"format": bad})
        assert answer.status_code == 406, bad
        assert answer.json()["code"] == "UNSUPPORTED_REPORT_FORMAT"
        assert "pdf" in answer.json()["message"]
    # Bad input keeps its own code in PDF mode (no report for a file that is not a PDF).
    answer = _pdf_report(api, b"khong phai pdf", params={"format": "pdf"})
    assert answer.status_code == 422 and answer.json()["code"] == "NOT_A_PDF"


def _sign_with_pyhanko(pdf: bytes, pki: DevPki, common_name: str, field: str) -> bytes:
    cert, private = issue_under_dev(pki, common_name)
    assert private is not None
    der = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = signers.SimpleSigner(
        signing_cert=cert,
        signing_key=asn1_keys.PrivateKeyInfo.load(der),
        cert_registry=SimpleCertificateStore.from_certs([pki.cert("interm")]),
    )
    out = io.BytesIO()
    signers.sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(pdf)),
        signers.PdfSignatureMetadata(field_name=field),
        signer=signer,
        output=out,
    )
    return out.getvalue()


# Typst markup and code in a certificate's common name (at most 64 bytes, RFC 5280).
HOSTILE = '#read("/etc/passwd") *đậm* $x^2$ #set text(60pt) ] [ <n> \\'


@needs_poppler
def test_text_from_the_pdf_never_becomes_markup(
    api: Any, tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    """A signer's name and a field name are the attacker's: typst shows them verbatim."""
    pki, _ = dev_pki
    signed = _sign_with_pyhanko(make_pdf(), pki, HOSTILE, "Chu ky #strong[x] ]")
    name = "#read(/etc/passwd) $y$ *z*\u202e.pdf"
    answer = _pdf_report(api, signed, name=name, params={"format": "pdf"})
    assert answer.status_code == 200, answer.text
    flat = re.sub(r"\s+", " ", _text(answer.content, tmp_path))
    assert re.sub(r"\s+", " ", HOSTILE) in flat
    # The uploaded name too, its bidirectional override shown escaped (never reordering).
    assert "#read(/etc/passwd) $y$ *z*\\u202e.pdf" in flat
    assert "#strong[x]" in flat
    assert "root:" not in flat
    # Still a sealed report that verifies.
    assert _verify(api, answer.content)["verdict"] == "TOTAL_PASSED"


def test_a_registered_key_seals_reports_and_a_disabled_one_is_refused(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    """``SIGNING_SERVICE_REPORT_SEAL_KEY`` names a key of the registry (here agency B's
    ECDSA seal, registered by the development bootstrap)."""
    services = _services(tmp_path, dev_pki, report_seal_key="000.00.31.H26/agency-b-seal")
    try:
        with TestClient(create_app(services), raise_server_exceptions=False) as api:
            answer = _pdf_report(api, make_pdf(), params={"format": "pdf"})
            assert answer.status_code == 200, answer.text
            report = _verify(api, answer.content)
            assert report["verdict"] == "TOTAL_PASSED"
            pki, _ = dev_pki
            signer = report["signatures"][0]["signer"]
            assert signer["certificate_sha256"] == pki.cert("agency-b-seal").sha256.hex()

            disable_key(services, agency_code="000.00.31.H26", name="agency-b-seal", actor="test")
            refused = _pdf_report(api, make_pdf(), params={"format": "pdf"})
            assert refused.status_code == 503
            assert refused.json()["code"] == "REPORT_NOT_CONFIGURED"
            assert "000.00.31.H26/agency-b-seal" in refused.json()["message"]
            assert refused.headers["retry-after"]
            # JSON is unaffected.
            assert _pdf_report(api, make_pdf()).status_code == 200
    finally:
        services.close()


def test_production_without_a_report_seal_answers_report_not_configured(tmp_path: Path) -> None:
    settings = Settings(
        mode="production",
        data_dir=tmp_path / "prod",
        key_passphrase="s3cret-prod",
        database_url=f"sqlite:///{tmp_path}/prod.db",
        audit_key=AUDIT_KEY,
        verification_processes=0,
        public_rate_per_minute=0,
    )
    services = Services.build(settings)
    try:
        with TestClient(create_app(services), raise_server_exceptions=False) as api:
            answer = _pdf_report(api, make_pdf(), params={"format": "pdf"})
            assert answer.status_code == 503
            body = answer.json()
            assert body["code"] == "REPORT_NOT_CONFIGURED"
            assert "SIGNING_SERVICE_REPORT_SEAL_KEY" in body["message"]
            assert answer.headers["retry-after"]
            assert _pdf_report(api, make_pdf()).json()["verdict"] == "NO_SIGNATURE"
    finally:
        services.close()


def test_every_coverage_level_has_words_in_the_report() -> None:
    """The report once kept its own copy of these words, with a code pyHanko never emits
    (CONTENT_ONLY) and without one it does (CONTIGUOUS_BLOCK_FROM_START)."""
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    from signing_service.reporting.pdf import COVERAGES

    assert {level.name for level in SignatureCoverageLevel} <= set(COVERAGES)
