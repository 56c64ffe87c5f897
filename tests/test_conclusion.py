"""One answer to "is this the document in force?" (services/conclusion.py): the JSON API's
``status``, the citizen's page (``/`` and the QR link's form) and the sealed PDF report give
one state for one file (red team 11 F1, F4, F9; new user 11 items 3, 4 and the portal gap).

The red team's files are rebuilt here: a document the service signs (``a3``), the same with a
FreeText comment added after issue (``a3-comment``), the same signed further by a citizen with
the dev PKI's officer key (``a3-citizen-signed``), another agency's document (``b1``), a
tampered copy, an unsigned PDF and an owner-password-only unsigned PDF (``encrypted``). Real
parts only: the application in-process over SQLite, the dev PKI on loopback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from signing_service.api.app import create_app
from signing_service.pki.dev import DevPki
from signing_service.services.conclusion import document_status
from signing_service.services.container import Services
from signing_service.settings import DEV_KEY_PASSPHRASE
from tests.conftest import make_settings
from tests.support.pdfs import make_pdf

BASE = "http://127.0.0.1:8000"
STATE_LABELS = {"valid": "Hợp lệ", "invalid": "Không hợp lệ", "indeterminate": "Chưa xác định được"}


# -- the rules on report shapes --------------------------------------------------------------


def _sig(modifications: str = "NO_CHANGES") -> dict[str, Any]:
    return {"type": "signature", "checks": {"modifications": {"code": modifications}}}


def _record(status: str = "in_force", matched: str = "file", public_id: str = "a" * 26) -> Any:
    return {
        "found": True,
        "public_id": public_id,
        "agency": {"code": "X", "name": "Sở Tư pháp tỉnh Demo A"},
        "issued_at": "2026-11-30T08:41:22+07:00",
        "status": status,
        "status_changed_at": "2026-11-30T09:00:00+07:00",
        "matched": matched,
    }


NOT_FOUND = {"found": False}
QR = "a" * 26

CASES = [
    # (verdict, signatures, warnings, registry, expected_public_id, state, code)
    ("TOTAL_PASSED", [_sig()], [], _record(), None, "valid", "IN_FORCE"),
    ("TOTAL_PASSED", [_sig()], [], _record(), QR, "valid", "IN_FORCE"),
    ("TOTAL_PASSED", [_sig()], [], NOT_FOUND, None, "valid", "SIGNATURES_VALID"),
    ("TOTAL_PASSED", [_sig()], [], None, None, "valid", "SIGNATURES_VALID"),
    (
        "TOTAL_PASSED",
        [_sig("ALLOWED_ANNOTATIONS")],
        [{"code": "ANNOTATION_ADDED_AFTER_SIGNING"}],
        NOT_FOUND,
        None,
        "valid",
        "SIGNATURES_VALID_CONTENT_ADDED",
    ),
    # F1: the same state whether the QR link is used or not.
    (
        "TOTAL_PASSED",
        [_sig("ALLOWED_ANNOTATIONS")],
        [],
        _record(matched="revision"),
        None,
        "indeterminate",
        "CONTENT_ADDED_AFTER_ISSUE",
    ),
    (
        "TOTAL_PASSED",
        [_sig("ALLOWED_ANNOTATIONS")],
        [],
        _record(matched="revision"),
        QR,
        "indeterminate",
        "CONTENT_ADDED_AFTER_ISSUE",
    ),
    ("TOTAL_PASSED", [_sig()], [], _record("revoked"), None, "invalid", "REVOKED"),
    ("TOTAL_PASSED", [_sig()], [], _record("superseded"), QR, "invalid", "SUPERSEDED"),
    ("TOTAL_FAILED", [_sig()], [], _record("revoked", "revision"), None, "invalid", "REVOKED"),
    (
        "TOTAL_FAILED",
        [_sig()],
        [],
        _record(matched="revision"),
        None,
        "invalid",
        "SIGNATURE_INVALID",
    ),
    ("TOTAL_FAILED", [_sig()], [], NOT_FOUND, None, "invalid", "SIGNATURE_INVALID"),
    ("INDETERMINATE", [_sig()], [], NOT_FOUND, None, "indeterminate", "SIGNATURE_INDETERMINATE"),
    ("NO_SIGNATURE", [], [], NOT_FOUND, None, "indeterminate", "NO_SIGNATURE"),
    # F9 / new user 3: a QR link with another file, even a valid and registered one.
    ("TOTAL_PASSED", [_sig()], [], _record(public_id="b" * 26), QR, "invalid", "NOT_QR_DOCUMENT"),
    ("TOTAL_PASSED", [_sig()], [], NOT_FOUND, QR, "invalid", "NOT_QR_DOCUMENT"),
    ("NO_SIGNATURE", [], [], NOT_FOUND, QR, "invalid", "NOT_QR_DOCUMENT"),
]


@pytest.mark.parametrize(
    ("verdict", "signatures", "warnings", "registry", "expected", "state", "code"), CASES
)
def test_rules(
    verdict: str,
    signatures: list[Any],
    warnings: list[Any],
    registry: Any,
    expected: str | None,
    state: str,
    code: str,
) -> None:
    report: dict[str, Any] = {"verdict": verdict, "signatures": signatures, "warnings": warnings}
    if registry is not None:
        report["registry"] = registry
    got = document_status(report, expected)
    assert (got.state, got.code) == (state, code), got
    assert got.message and not got.message.isascii()
    added = code in ("CONTENT_ADDED_AFTER_ISSUE", "SIGNATURES_VALID_CONTENT_ADDED")
    # Never "not modified after signing" for a file with content added after signing.
    assert ("không bị sửa đổi sau khi ký" in got.message) == (
        code in ("IN_FORCE", "SIGNATURES_VALID")
    ) or added
    if added:
        assert "không bị sửa đổi" not in got.message
    if code == "NOT_QR_DOCUMENT":
        # Nothing of the uploaded file is described as the QR's document.
        assert "Đây đúng là" not in got.message and "đang có hiệu lực" not in got.message
    # The comparison kept with the report (the page's PDF report) gives the same answer.
    if expected is not None:
        assert document_status({**report, "expected_public_id": expected}) == got


# -- new user 12: the signer's organisation, and earlier versions ----------------------------


def _signed_by(organisation: str | None) -> dict[str, Any]:
    return {**_sig(), "signer": {"common_name": "Con dấu", "organization": organisation}}


@pytest.mark.parametrize(
    ("organisation", "same"),
    [
        ("Sở Tư pháp tỉnh Demo A", True),
        # Case, spacing and decomposed accents (NFD) do not make another organisation.
        ("  SỞ TƯ PHÁP   tỉnh demo a ", True),
        ("So\u031b\u0309 Tư pháp tỉnh Demo A", True),
        (None, True),  # a personal certificate naming no organisation: nothing to contradict
        ("UBND xã Demo B", False),
    ],
)
def test_in_force_never_vouches_for_another_organisations_signature(
    organisation: str | None, same: bool
) -> None:
    """New user 12 item 2: a commune's seal registered to a department made the page say
    "Đây đúng là văn bản Sở … đã cấp" above "Cơ quan, tổ chức: UBND xã Demo B"."""
    report = {
        "verdict": "TOTAL_PASSED",
        "signatures": [_signed_by(organisation)],
        "warnings": [],
        "registry": _record(),
    }
    got = document_status(report)
    assert (got.state, got.code) == ("valid", "IN_FORCE")
    if same:
        assert "Đây đúng là văn bản Sở Tư pháp tỉnh Demo A đã cấp" in got.message
    else:
        assert "Đây đúng là" not in got.message
        assert "Sở Tư pháp tỉnh Demo A" in got.message and "UBND xã Demo B" in got.message


def test_only_the_last_signature_names_the_issuer() -> None:
    """A document another agency signed first, then signed further: the registering agency's
    signature is the last; the earlier one's organisation is not a contradiction."""
    report = {
        "verdict": "TOTAL_PASSED",
        "signatures": [_signed_by("UBND xã Demo B"), _signed_by("Sở Tư pháp tỉnh Demo A")],
        "warnings": [],
        "registry": _record(),
    }
    assert "Đây đúng là văn bản Sở Tư pháp tỉnh Demo A" in document_status(report).message


@pytest.mark.parametrize(
    ("status", "verdict", "state", "code"),
    [
        ("in_force", "TOTAL_PASSED", "valid", "IN_FORCE"),
        ("revoked", "TOTAL_PASSED", "invalid", "REVOKED"),
        ("in_force", "INDETERMINATE", "indeterminate", "SIGNATURE_INDETERMINATE"),
    ],
)
def test_earlier_version_names_the_newer_one_state_unchanged(
    status: str, verdict: str, state: str, code: str
) -> None:
    """New user 12 item 8: an earlier version verified with no hint of the newer one outside
    the JSON's ``newer_version``. The message says it, with the link; the state stays."""
    link = "https://xacminh.example.vn/xac-minh/" + "a" * 26
    older = {**_record(status), "version": 1, "newer_version": True, "link": link}
    report = {"verdict": verdict, "signatures": [_sig()], "warnings": [], "registry": older}
    got = document_status(report)
    assert (got.state, got.code) == (state, code)
    assert "phiên bản mới hơn" in got.message and link in got.message
    newest = {**older, "version": 3, "newer_version": False}
    plain = document_status({**report, "registry": newest})
    assert (plain.state, plain.code) == (state, code)
    assert "phiên bản mới hơn" not in plain.message
    # Without a link (the CLI has no public base URL) the public id is named instead.
    no_link = document_status({**report, "registry": {**older, "link": None}})
    assert "phiên bản mới hơn" in no_link.message and "a" * 26 in no_link.message


# -- the real files through the API, the page and the PDF report ----------------------------


@pytest.fixture
def site(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> Iterator[tuple[TestClient, Services]]:
    services = Services.build(
        make_settings(
            tmp_path,
            f"sqlite:///{tmp_path / 'metadata.db'}",
            dev_pki,
            public_base_url=BASE,
        )
    )
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield client, services
    services.close()


def _headers(services: Services, agency: int) -> dict[str, str]:
    credentials = json.loads(services.settings.dev_credentials_file.read_text())
    return {"Authorization": f"Bearer {credentials['agencies'][agency]['api_key']}"}


def _issue(
    client: TestClient, services: Services, text: str, agency: int = 0, pdf: bytes | None = None
) -> tuple[bytes, str]:
    return _issue_full(client, services, text, agency, pdf)[:2]


def _issue_full(
    client: TestClient, services: Services, text: str, agency: int = 0, pdf: bytes | None = None
) -> tuple[bytes, str, str]:
    """(signed bytes, registry public id, document id) of ``pdf`` (default ``make_pdf(text)``)
    signed at B-T through the API."""
    headers = _headers(services, agency)
    done = client.post(
        "/v1/signatures",
        headers=headers,
        data={"profile": "agency-a-seal" if agency == 0 else "agency-b-seal", "level": "B-T"},
        files={"file": ("quyet-dinh.pdf", pdf or make_pdf(text), "application/pdf")},
    )
    assert done.status_code == 201, done.text
    body = done.json()
    got = client.get(body["document"]["download_url"], headers=headers)
    assert got.status_code == 200
    return got.content, body["registry"]["public_id"], body["document"]["id"]


def with_comment(pdf: bytes) -> bytes:
    """The red team's mkcomment.py: one incremental update adding a FreeText annotation."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.generic import pdf_name
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    annot = generic.DictionaryObject(
        {
            pdf_name("/Type"): pdf_name("/Annot"),
            pdf_name("/Subtype"): pdf_name("/FreeText"),
            pdf_name("/Rect"): generic.ArrayObject(
                [generic.NumberObject(v) for v in (50, 600, 500, 650)]
            ),
            pdf_name("/Contents"): generic.TextStringObject("SỐ TIỀN: 999.000.000 đồng (đã sửa)"),
            pdf_name("/DA"): generic.TextStringObject("/Helv 20 Tf 0 g"),
        }
    )
    ref = writer.add_object(annot)
    annots = page.get("/Annots")
    if annots is None:
        page["/Annots"] = generic.ArrayObject([ref])
    else:
        annots.get_object().append(ref)
    writer.update_container(page)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def with_title(pdf: bytes) -> bytes:
    """One incremental update changing the document's title (metadata, not validation data)."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    writer.set_info(
        generic.DictionaryObject(
            {generic.NameObject("/Title"): generic.TextStringObject("Quyết định đã sửa")}
        )
    )
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def citizen_signed(services: Services, pdf: bytes) -> bytes:
    """``pdf`` signed further (PAdES B-T) with the dev PKI's trusted officer key."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers, timestamps
    from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner

    from signing_service.services.allowlists import tsa_url

    assert services.dev_pki is not None
    signer = signers.SimpleSigner.load_pkcs12(
        services.dev_pki.p12_path("officer"), passphrase=DEV_KEY_PASSPHRASE.encode()
    )
    assert signer is not None
    out = BytesIO()
    PdfSigner(
        PdfSignatureMetadata(field_name="CongDan", subfilter=fields.SigSeedSubFilter.PADES),
        signer=signer,
        timestamper=timestamps.HTTPTimeStamper(tsa_url(services, None)),
    ).sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf)), output=out)
    return out.getvalue()


def api_status(client: TestClient, pdf: bytes) -> dict[str, Any]:
    answer = client.post("/v1/verifications", files={"file": ("x.pdf", pdf, "application/pdf")})
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    assert set(report["status"]) == {"state", "code", "message"}
    return report


def page(client: TestClient, pdf: bytes, **fields: str) -> tuple[str, str, str]:
    """The page's state label, lead sentence and whole HTML for an upload."""
    response = client.post(
        "/xac-minh", data=fields, files={"file": ("tep.pdf", pdf, "application/pdf")}
    )
    assert response.status_code == 200, response.text[:400]
    html = response.text
    label = re.search(r'class="state-label">([^<]*)<', html)
    lead = re.search(r'<h1 class="lead">(.*?)</h1>', html, re.S)
    assert label is not None and lead is not None
    return label.group(1), lead.group(1), html


def report_text(client: TestClient, html: str) -> str | None:
    """The text of the sealed PDF report the page's button gives (None without pdftotext)."""
    link = re.search(r'href="(/xac-minh/bao-cao/[^"]+\.pdf)"', html)
    assert link is not None, "no report button"
    pdf = client.get(link.group(1))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        return None
    done = subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=pdf.content, capture_output=True, check=True
    )
    return " ".join(done.stdout.decode().split())


def test_one_state_for_one_file_api_page_qr_and_report(
    site: tuple[TestClient, Services],
) -> None:
    client, services = site
    a3, a3_id = _issue(client, services, "Quyet dinh so 3")
    b1, _ = _issue(client, services, "Quyet dinh so 1 cua B", agency=1)
    comment = with_comment(a3)
    citizen = citizen_signed(services, a3)

    # The issued file itself: valid and in force, everywhere.
    report = api_status(client, a3)
    assert report["status"]["state"] == "valid" and report["status"]["code"] == "IN_FORCE"
    for fields in ({}, {"ma": a3_id}):
        label, _, _ = page(client, a3, **fields)
        assert label == "Hợp lệ"

    # F1: a comment or the citizen's own signature added after issue.
    for added in (comment, citizen):
        report = api_status(client, added)
        assert report["verdict"] == "TOTAL_PASSED", report["message"]  # the signatures pass
        assert report["registry"]["matched"] == "revision"
        status = report["status"]
        assert (status["state"], status["code"]) == ("indeterminate", "CONTENT_ADDED_AFTER_ISSUE")
        assert report["message"] == status["message"]  # not only "all signatures valid"
        labels = set()
        for fields in ({}, {"ma": a3_id}):
            label, lead, html = page(client, added, **fields)
            labels.add(label)
            assert "không bị sửa đổi sau khi ký" not in lead
            assert "thêm vào sau khi cấp" in lead
        assert labels == {STATE_LABELS["indeterminate"]}
        # The report of the QR route's upload says the same.
        text = report_text(client, html)
        if text is not None:
            assert "Kết quả: Chưa xác định được" in text
            assert "không bị sửa đổi sau khi ký" not in text.split("Kết quả:")[1][:400]

    # F9 / new user 3: the QR link of a3 with b1 (another agency's valid, registered file).
    assert api_status(client, b1)["status"]["code"] == "IN_FORCE"
    label, lead, html = page(client, b1, ma=a3_id)
    assert label == "Không hợp lệ"
    assert "KHÔNG phải văn bản mà mã QR này chỉ tới" in lead
    assert "Đây đúng là văn bản" not in lead and "đang có hiệu lực" not in lead
    text = report_text(client, html)
    if text is not None:
        assert "Kết quả: Không hợp lệ" in text
        assert "KHÔNG phải văn bản mà mã QR này chỉ tới" in text

    # New user 4: a tampered copy of a registered document is not reassured "not an error".
    tampered = bytearray(a3)
    at = bytes(tampered).index(b"Quyet dinh so 3")
    tampered[at + 14] = ord("8")
    report = api_status(client, bytes(tampered))
    assert report["status"]["code"] == "SIGNATURE_INVALID"
    label, _, html = page(client, bytes(tampered))
    assert label == "Không hợp lệ" and "không phải là lỗi" not in html
    # An unsigned PDF neither.
    label, _, html = page(client, make_pdf("chua ky"))
    assert label == "Chưa xác định được" and "không phải là lỗi" not in html


def test_revoked_document_json_is_not_all_valid(site: tuple[TestClient, Services]) -> None:
    """New user 11: a portal showing ``message`` or ``status`` never says a revoked document
    is valid; ``verdict`` stays the signatures' ETSI indication."""
    client, services = site
    a3, a3_id = _issue(client, services, "Quyet dinh so 5")
    revoked = client.post(
        f"/v1/registered-documents/{a3_id}/revoke",
        headers=_headers(services, 0),
        json={"reason": "Quyết định bị hủy bỏ"},
    )
    assert revoked.status_code == 200, revoked.text
    report = api_status(client, a3)
    assert report["verdict"] == "TOTAL_PASSED"
    assert report["status"]["state"] == "invalid" and report["status"]["code"] == "REVOKED"
    assert report["message"] != "Tất cả chữ ký số hợp lệ." and "thu hồi" in report["message"]
    label, lead, _ = page(client, a3)
    assert label == "Không hợp lệ" and "thu hồi" in lead


def test_owner_password_only_unsigned_pdf_is_no_signature(
    site: tuple[TestClient, Services],
) -> None:
    """Red team 11 F4: an unsigned PDF encrypted by pyHanko with an owner password only
    (AES-256 and its ISO 32004 MAC, whose /ByteRange sits in the trailer) is "no signature",
    not "signed but broken", in the API and on the page."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.pdf_utils.writer import copy_into_new_writer

    client, _ = site
    writer = copy_into_new_writer(PdfFileReader(BytesIO(make_pdf("bi mat"))))
    writer.encrypt("secret", "")
    out = BytesIO()
    writer.write(out)
    encrypted = out.getvalue()
    assert b"/Encrypt" in encrypted
    report = api_status(client, encrypted)
    assert report["verdict"] == "NO_SIGNATURE", report["problems"]
    assert report["status"]["code"] == "NO_SIGNATURE"
    label, _lead, html = page(client, encrypted)
    assert label == "Chưa xác định được"
    assert "bị hỏng" not in html


def _extended_by_upload(client: TestClient, services: Services, issued: bytes) -> dict[str, bytes]:
    """``issued`` extended by another agency through ``POST /v1/extensions``, by level."""
    extended = {}
    for level in ("B-LT", "B-LTA"):
        answer = client.post(
            "/v1/extensions",
            headers=_headers(services, 1),
            data={"level": level},
            files={"file": ("qd.pdf", issued, "application/pdf")},
        )
        assert answer.status_code == 200, answer.text
        extended[level] = answer.content
    return extended


def test_validation_data_added_after_issue_keeps_the_state(
    site: tuple[TestClient, Services],
) -> None:
    """Red team 12 F5: a registered document extended through ``POST /v1/extensions`` (here by
    another agency: anyone may extend a public PDF) gains only a DSS and document timestamps,
    which are validation data (ETSI EN 319 142-1), not content: still ``IN_FORCE``, saying
    validation data was added. A comment or a signature added after that extension is still
    content added after issue."""
    client, services = site
    issued, public_id = _issue(client, services, "Quyet dinh so 5")
    extended = _extended_by_upload(client, services, issued)
    assert all(data.startswith(issued) for data in extended.values())
    for data in extended.values():
        report = api_status(client, data)
        assert report["verdict"] == "TOTAL_PASSED", report["message"]
        assert report["registry"]["matched"] == "validation_data"
        status = report["status"]
        assert (status["state"], status["code"]) == ("valid", "IN_FORCE"), status
        assert "dữ liệu xác minh dài hạn" in status["message"]
        for fields in ({}, {"ma": public_id}):
            label, lead, _ = page(client, data, **fields)
            assert label == "Hợp lệ", lead
            assert "thêm nội dung" not in lead and "thêm vào sau khi cấp" not in lead

    # Anything else after the extension is still content added after issue.
    for added in (
        with_comment(extended["B-LTA"]),
        citizen_signed(services, extended["B-LTA"]),
        with_title(extended["B-LTA"]),
    ):
        report = api_status(client, added)
        assert report["verdict"] == "TOTAL_PASSED", report["message"]
        assert report["registry"]["matched"] == "revision"
        status = report["status"]
        assert (status["state"], status["code"]) == ("indeterminate", "CONTENT_ADDED_AFTER_ISSUE")
        label, lead, _ = page(client, added, ma=public_id)
        assert label == STATE_LABELS["indeterminate"] and "thêm vào sau khi cấp" in lead


# -- new user 14 F2: a real-world PDF (Info dictionary + XMP) extended by the service ----------


def real_world_pdf(text: str) -> bytes:
    """A PDF as Word, LibreOffice or typst write it: an Info dictionary and an XMP /Metadata
    stream carrying title, author, creator tool, producer and dates."""
    import pikepdf

    pdf = pikepdf.open(BytesIO(make_pdf(text)))
    pdf.docinfo["/Title"] = "Quyết định số 14"
    pdf.docinfo["/Author"] = "Sở Tư pháp"
    pdf.docinfo["/Creator"] = "Writer"
    pdf.docinfo["/Producer"] = "LibreOffice 24.2"
    pdf.docinfo["/CreationDate"] = "D:20261101090000+07'00'"
    pdf.docinfo["/ModDate"] = "D:20261101090000+07'00'"
    with pdf.open_metadata(set_pikepdf_as_editor=False) as meta:
        meta["dc:title"] = "Quyết định số 14"
        meta["dc:creator"] = ["Sở Tư pháp"]
        meta["xmp:CreatorTool"] = "Writer"
        meta["pdf:Producer"] = "LibreOffice 24.2"
        meta["xmp:CreateDate"] = "2026-11-01T09:00:00+07:00"
        meta["xmp:ModifyDate"] = "2026-11-01T09:00:00+07:00"
        meta["xmpMM:InstanceID"] = "uuid:11111111-1111-1111-1111-111111111111"
    out = BytesIO()
    pdf.save(out)
    return out.getvalue()


def _xmp(pdf: bytes) -> bytes:
    from pyhanko.pdf_utils.reader import PdfFileReader

    data: bytes = PdfFileReader(BytesIO(pdf)).root["/Metadata"].get_object().data
    return data


def with_xmp(pdf: bytes, edit: dict[bytes, bytes]) -> bytes:
    """One incremental update replacing the XMP packet by ``pdf``'s with the ``edit`` byte
    replacements made (as another tool's save or an attacker's edit would); pyHanko's writer
    then updates xmp:ModifyDate and pdf:Producer as it always does."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.metadata.xmp_xml import MetadataStream

    data = _xmp(pdf)
    for old, new in edit.items():
        assert old in data, old
        data = data.replace(old, new)
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    writer.root["/Metadata"] = writer.add_object(MetadataStream(stream_data=data))
    writer.update_root()
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def with_page_text(pdf: bytes) -> bytes:
    """One incremental update appending a content stream to page 1 (text a person reads)."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.generic import pdf_name
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    added = writer.add_object(
        generic.StreamObject(stream_data=b"BT /F1 14 Tf 72 700 Td (DA HUY BO) Tj ET")
    )
    contents = page.raw_get("/Contents")
    existing = contents.get_object()
    parts = list(existing) if isinstance(existing, generic.ArrayObject) else [contents]
    page[pdf_name("/Contents")] = generic.ArrayObject([*parts, added])
    writer.update_container(page)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def test_real_world_pdf_extended_by_the_service_keeps_the_state(
    site: tuple[TestClient, Services],
) -> None:
    """New user 14 F2: a PDF with an Info dictionary and XMP, signed at B-T and extended by the
    service (``POST /v1/extensions`` to B-LT and B-LTA, ``POST /v1/documents/{id}/extensions``),
    whose writer updates /ModDate, /Producer and the XMP packet, is matched as validation data
    and stays ``IN_FORCE``; so is another tool's metadata-only save (Adobe: new xmp:MetadataDate
    and xmpMM:InstanceID). Page content, an annotation, the Info /Title or the XMP dc:title
    changed after that is still content added after issue."""
    client, services = site
    issued, public_id, document_id = _issue_full(
        client, services, "Quyet dinh so 14", pdf=real_world_pdf("Quyet dinh so 14")
    )
    # The writer's modification date has whole seconds: a second later it differs from the
    # signing's (new user 14 extended minutes later; in the same second the bytes match).
    time.sleep(1.1)
    extended = _extended_by_upload(client, services, issued)
    made = client.post(
        f"/v1/documents/{document_id}/extensions",
        headers=_headers(services, 0),
        json={"level": "B-LTA"},
    )
    assert made.status_code in (200, 201), made.text
    got = client.get(made.json()["document"]["download_url"], headers=_headers(services, 0))
    assert got.status_code == 200
    extended["document route B-LTA"] = got.content
    adobe_like = with_xmp(
        extended["B-LTA"],
        {
            b"uuid:11111111-1111-1111-1111-111111111111": (
                b"uuid:22222222-2222-2222-2222-222222222222"
            ),
        },
    )
    extended["metadata-only save by another tool"] = adobe_like

    for name, data in extended.items():
        assert data.startswith(issued), name
        # The writer did rewrite the metadata (the case new user 14 met): a new XMP packet.
        assert b"/Metadata" in data[len(issued) :] and _xmp(data) != _xmp(issued), name
        report = api_status(client, data)
        assert report["verdict"] == "TOTAL_PASSED", (name, report["message"])
        status = report["status"]
        assert (status["state"], status["code"]) == ("valid", "IN_FORCE"), (
            name,
            report["registry"].get("matched"),
            [s["checks"].get("modifications") for s in report["signatures"]],
        )
        if name.startswith("document route"):
            # The document route registers the new version itself: matched as a file.
            assert report["registry"]["matched"] == "file", name
            continue
        assert report["registry"]["matched"] == "validation_data", name
        assert "dữ liệu xác minh dài hạn" in status["message"]
        for fields in ({}, {"ma": public_id}):
            label, lead, _ = page(client, data, **fields)
            assert label == "Hợp lệ", (name, lead)
            assert "thêm nội dung" not in lead and "thêm vào sau khi cấp" not in lead

    # What a person sees, changed after the extension: still content added after issue.
    lta = extended["B-LTA"]
    for name, added in {
        "page text": with_page_text(lta),
        "annotation": with_comment(lta),
        "Info title": with_title(lta),
        "XMP title": with_xmp(lta, {"Quyết định số 14".encode(): "Quyết định đã hủy".encode()}),
    }.items():
        report = api_status(client, added)
        assert report["registry"]["matched"] == "revision", name
        status = report["status"]
        assert status["code"] in ("CONTENT_ADDED_AFTER_ISSUE", "SIGNATURE_INVALID"), (name, status)
        assert status["state"] != "valid", name
        label, lead, _ = page(client, added, ma=public_id)
        assert label != "Hợp lệ", (name, lead)
