"""The citizen's verification page (issue 11 items 1 and 3): server-rendered Vietnamese HTML.

- ``GET /`` and ``GET /xac-minh``: the form (choose a PDF; drag and drop with JavaScript).
- ``POST /xac-minh``: multipart form, works without JavaScript; the result page, or the form
  again with the error in Vietnamese (linked to the file input) and the error's HTTP status.
- ``GET /xac-minh/{public_id}``: the registry record a QR code links to, with the form to
  compare the file the citizen holds (``ma`` carries the id through the upload).
- ``GET /xac-minh/bao-cao/{token}.pdf``: the sealed PDF report of a result shown in the last
  15 minutes (:class:`~signing_service.web.store.ReportStore`), without uploading again.

Uploads take the same public lane as ``POST /v1/verifications``: the edge's anonymous limits
(the app's :class:`~signing_service.api.edge.PublicLane` rate-limits these paths too), the
body limit, :func:`~signing_service.api.deps.read_upload`, and the verification worker
processes reached through :data:`~signing_service.api.deps.VerificationThreads`, so a citizen's
upload never holds a thread agencies sign with.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi import UploadFile as FastApiUpload
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from signing_service import errors
from signing_service.api.deps import AppServices, VerificationThreads, read_upload
from signing_service.services.container import Services
from signing_service.verification.messages import display_text
from signing_service.web.present import RegistryView, present, present_registry
from signing_service.web.store import ReportStore

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
FORM_PATH = "/xac-minh"
PDF_PREFIX = "/xac-minh/bao-cao/"
MAX_FILE_NAME = 200  # characters of the uploaded file's name shown back
SERVICE_NAME = "Cổng xác minh văn bản điện tử"

router = APIRouter(include_in_schema=False)


def _asset_versions() -> dict[str, str]:
    """Each static asset's content hash: its URL changes when it does, so browsers may keep
    it for long (``Cache-Control`` in :mod:`signing_service.web.middleware`)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        for p in STATIC_DIR.iterdir()
        if p.is_file()
    }


ASSET_VERSIONS = _asset_versions()

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals["asset"] = lambda name: f"/static/{name}?v={ASSET_VERSIONS[name]}"
templates.globals["service_name"] = SERVICE_NAME
templates.globals["icons"] = templates.get_template("icons.html").module


def render(
    name: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    """The template ``name`` rendered with ``context`` as an HTML response."""
    return HTMLResponse(
        templates.get_template(name).render(status=status, **context),
        status_code=status,
        headers=headers,
    )


def render_error(
    status: int,
    code: str,
    message: str,
    *,
    retry_after: str | None = None,
    max_mb: int = 0,
    base_mb: int = 0,
) -> bytes:
    """The friendly Vietnamese error page (UTF-8 HTML) for an error answered before or outside
    a page route (the edge's limits, unknown paths, a wrong method):
    :mod:`signing_service.web.middleware`. ``retry_after``: the ``Retry-After`` seconds, said
    in words (a citizen never sees the header's name); ``max_mb``/``base_mb``: the form's size
    limits (:func:`_limits`)."""
    title = {
        404: "Không tìm thấy trang",
        405: "Trang không hỗ trợ thao tác này",
        413: "Tệp quá lớn",
        414: "Địa chỉ quá dài",
        429: "Bạn đã gửi nhiều tệp liên tiếp",
        431: "Địa chỉ quá dài",
        503: "Dịch vụ đang bận",
    }.get(status, "Không xử lý được yêu cầu")
    seconds = _seconds(retry_after)
    if status == 404:
        message = (
            "Địa chỉ này không có trên trang xác minh. Nếu bạn mở từ mã QR hoặc đường liên "
            "kết, hãy kiểm tra lại địa chỉ đã nhập, hoặc tải tệp PDF lên để xác minh."
        )
    elif status == 405:
        message = (
            "Địa chỉ này chỉ dùng để xem trang hoặc gửi tệp bằng biểu mẫu. Hãy mở trang xác "
            "minh và chọn tệp PDF từ đó."
        )
    elif status in (414, 431):
        message = (
            "Đường liên kết bạn mở dài bất thường nên không thể là liên kết của một văn bản. "
            "Hãy quét lại mã QR hoặc kiểm tra lại địa chỉ, hoặc tải tệp PDF lên để xác minh."
        )
    elif status == 429:
        # The edge's message names the Retry-After header: for API callers, not citizens.
        message = (
            "Bạn đã gửi nhiều tệp trong thời gian ngắn; vui lòng thử lại sau "
            + (f"{seconds} giây." if seconds else "ít phút.")
            + " Giới hạn này bảo vệ dịch vụ để mọi người đều dùng được."
        )
    elif status == 503 and seconds:
        message = f"{message.rstrip('.')}. Vui lòng thử lại sau {seconds} giây."
    return (
        templates.get_template("error.html")
        .render(
            title=title,
            message=message,
            code=code,
            status=status,
            show_form=status in (404, 405, 413, 414, 429, 431) and max_mb > 0,
            max_mb=max_mb,
            base_mb=base_mb,
        )
        .encode()
    )


# What each error code shown on an error page means, for the citizen who reads it out to the
# help desk (the code itself stays: the help desk searches by it).
CODE_TEXTS = {
    "RATE_LIMITED": "quá nhiều lượt gửi từ cùng một địa chỉ mạng",
    "ANONYMOUS_BUSY": "dịch vụ đang xử lý nhiều tệp cùng lúc",
    "FILE_TOO_LARGE": "tệp vượt quá dung lượng cho phép",
    "NOT_FOUND": "không có trang hoặc dữ liệu này",
    "METHOD_NOT_ALLOWED": "thao tác không được hỗ trợ ở địa chỉ này",
    "REQUEST_HEADERS_TOO_LARGE": "địa chỉ hoặc phần đầu yêu cầu quá dài",
    "REQUEST_TIMEOUT": "tệp được gửi quá chậm",
    "REGISTRY_RECORD_NOT_FOUND": "không có văn bản mang mã này trong sổ đăng ký",
    "NOT_A_PDF": "tệp không phải là tài liệu PDF",
    "ENCRYPTED_PDF": "tệp PDF được đặt mật khẩu",
}
templates.globals["code_texts"] = CODE_TEXTS


def _seconds(retry_after: str | None) -> int | None:
    """``Retry-After`` as whole seconds (at least 1); ``None`` when absent or not a number."""
    try:
        return max(1, int(retry_after)) if retry_after else None
    except ValueError:
        return None


def _max_mb(services: Services) -> int:
    return services.settings.max_document_bytes // (1024 * 1024)


def _limits(services: Services) -> dict[str, int]:
    """The form's size limit in MB as the README states it: ``max_mb`` the largest file the
    page accepts (``max_document_bytes``), ``base_mb`` the national document exchange limit
    it is made of (``max_upload_bytes``; the rest is the room signatures take)."""
    return {
        "max_mb": _max_mb(services),
        "base_mb": services.settings.max_upload_bytes // (1024 * 1024),
    }


def report_store(request: Request, services: Services) -> ReportStore:
    """The application's :class:`ReportStore` (``app.state.web_reports``, kept in the metadata
    database: every worker process sees every link), made on first use."""
    store: ReportStore | None = getattr(request.app.state, "web_reports", None)
    if store is None:
        store = request.app.state.web_reports = ReportStore(services.db)
    return store


# Shown instead of the download button when the store of report links is full (it never
# evicts a live link to make room, red team F3).
STORE_FULL_NOTE = (
    "Hiện chưa tải được báo cáo PDF cho kết quả này vì dịch vụ đang giữ quá nhiều kết quả "
    "xác minh. Kết quả trên trang vẫn đầy đủ; nếu cần báo cáo PDF, hãy tải tệp lên lại sau "
    "ít phút."
)


def pdf_reports_enabled(services: Services) -> bool:
    """Whether the page offers "Tải báo cáo PDF": a report seal is configured
    (``SIGNING_SERVICE_REPORT_SEAL_KEY``), or, outside production, the dev PKI's service seal
    is there (:func:`signing_service.reporting.pdf.report_seal`'s own rule). Without it the
    button is not shown; the route would answer 503 ``REPORT_NOT_CONFIGURED``."""
    settings = services.settings
    if settings.report_seal_key:
        return True
    return not settings.is_production and services.dev_pki is not None


# HEAD too: link checkers, chat apps' link previews and uptime probes ask with HEAD
# (red team F6); the server sends the headers of the GET without its body.
@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
@router.api_route(FORM_PATH, methods=["GET", "HEAD"], response_class=HTMLResponse)
async def form_page(services: AppServices) -> HTMLResponse:
    """The upload form."""
    return render("index.html", **_limits(services), error=None)


def _verify_for_page(services: Services, data: bytes) -> dict[str, Any]:
    """The verification report of ``data`` with its registry section (blocking; runs in the
    public lane's threads, the verification itself in the worker processes)."""
    from signing_service.services.registry import registry_section
    from signing_service.services.verification import verify_document_json

    body = verify_document_json(services, data, actor="public", anonymous=True)
    report: dict[str, Any] = json.loads(body)
    if "registry" not in report:
        report["registry"] = registry_section(services, data, report["document"]["sha256"])
    if not (report.get("registry") or {}).get("found"):
        from signing_service.reporting.recognise import service_report

        # The service's own sealed report: said so instead of "not issued here" (F13).
        recognised = service_report(services, report)
        if recognised is not None:
            report["registry"] = {**(report.get("registry") or {}), "service_report": recognised}
    return report


def _file_name(upload: UploadFile) -> str | None:
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return display_text(name, MAX_FILE_NAME) if name else None


async def _form_error(
    request: Request,
    services: Services,
    in_lane: VerificationThreads,
    error: errors.ServiceError,
    public_id: str | None,
) -> HTMLResponse:
    """The form again, with ``error``'s message linked to the file input and its status."""
    headers = dict(error.headers)
    if error.status == 503:
        headers.setdefault("Retry-After", str(services.settings.retry_after_seconds))
    if public_id:
        registry = await _record_view(services, in_lane, public_id)
        if registry is not None:
            return render(
                "record.html",
                status=error.status,
                headers=headers or None,
                registry=registry,
                error=error.message,
                **_limits(services),
            )
    return render(
        "index.html",
        status=error.status,
        headers=headers or None,
        error=error.message,
        **_limits(services),
    )


@router.post(FORM_PATH, response_class=HTMLResponse)
async def verify_page(
    request: Request, services: AppServices, in_lane: VerificationThreads
) -> HTMLResponse:
    """Verify the uploaded PDF and show the result; every bad input answered on the page."""
    from signing_service.services.registry import PUBLIC_ID

    public_id: str | None = None
    try:
        # Parsed here, not by FastAPI's File(): each failure (not multipart, a chunked body
        # over the limit, too many parts) becomes a page, not the API's JSON.
        form = await request.form(max_files=1, max_fields=4, max_part_size=1024)
    except errors.ServiceError as e:
        return await _form_error(request, services, in_lane, e, None)
    except (MultiPartException, StarletteHTTPException, ValueError, KeyError) as e:
        # Two files (dropped together, or a hand-made form): say so, not "invalid request"
        # (red team F14). Starlette's message (a MultiPartException, or the HTTPException it
        # becomes inside an app) is the only way to tell this case apart.
        detail = str(getattr(e, "detail", None) or e)
        if detail.startswith("Too many files"):
            one = errors.MalformedRequest(
                "Mỗi lần chỉ xác minh được một tệp PDF: hãy chọn từng tệp một."
            )
            return await _form_error(request, services, in_lane, one, None)
        bad = errors.MalformedRequest("Yêu cầu không hợp lệ: hãy chọn tệp PDF bằng biểu mẫu.")
        return await _form_error(request, services, in_lane, bad, None)
    try:
        ma = form.get("ma")
        if isinstance(ma, str) and PUBLIC_ID.fullmatch(ma):
            public_id = ma
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or (not upload.filename and not upload.size):
            missing = errors.InvalidRequest("Bạn chưa chọn tệp PDF nào.")
            return await _form_error(request, services, in_lane, missing, public_id)
        file_name = _file_name(upload)
        try:
            # Starlette's UploadFile (the form parser's); FastAPI's is the same class, annotated.
            data = await read_upload(cast(FastApiUpload, upload), services.settings)
            report = await in_lane(_verify_for_page, services, data)
        except errors.ServiceError as e:
            return await _form_error(request, services, in_lane, e, public_id)
    finally:
        # Spooled upload files are closed (deleted) whatever happened.
        await form.close()
    if public_id is not None:
        # Kept with the report: its PDF carries the QR comparison and the same state (F9).
        report["expected_public_id"] = public_id
    view = present(report, expected_public_id=public_id)
    expected = None
    if public_id and view.comparison is not None and not view.comparison.matches:
        # The record the QR code promised, shown next to the file that is not it.
        expected = await _record_view(services, in_lane, public_id)
        if view.registry is not None and view.registry.public_id == public_id:
            expected = None  # the same record (content added after issue): shown once
    pdf_url = pdf_note = None
    if pdf_reports_enabled(services):
        from signing_service.reporting.pdf import report_file_name

        # The link keeps what this page showed: the report, the QR comparison, the name.
        kept = {"report": report, "filename": file_name, "expected_public_id": public_id}
        store = report_store(request, services)
        try:
            token = await in_lane(
                store.put,
                json.dumps(kept, ensure_ascii=False).encode(),
                report_file_name(report),
            )
        except errors.ServiceError:
            token = None
        if token:
            pdf_url = f"{PDF_PREFIX}{token}.pdf"
        else:
            pdf_note = STORE_FULL_NOTE
    return render(
        "result.html",
        view=view,
        comparison=view.comparison,
        expected_registry=expected,
        page_url=_page_url(request, services),
        file_name=file_name,
        pdf_url=pdf_url,
        pdf_note=pdf_note,
    )


def _page_url(request: Request, services: Services) -> str:
    """The page's address as the citizen reached it, for the printout to name its source:
    the configured public address (``SIGNING_SERVICE_PUBLIC_BASE_URL``), else the request's."""
    base = services.settings.public_base_url or str(request.base_url)
    return base.rstrip("/") + FORM_PATH


async def _record_view(
    services: Services, in_lane: VerificationThreads, public_id: str
) -> RegistryView | None:
    from signing_service.services.registry import lookup_public_id

    record = await in_lane(lookup_public_id, services, public_id)
    return present_registry(record.to_public_dict()) if record is not None else None


@router.get(PDF_PREFIX + "{token}.pdf")
async def report_pdf(
    request: Request, token: str, services: AppServices, in_lane: VerificationThreads
) -> Response:
    """The sealed PDF report of a result shown in the last 15 minutes; a friendly 404 page
    when the token is unknown or expired.

    Rendered (typeset, sealed, timestamped) once per link, in the bounded render lane
    (:mod:`signing_service.reporting.lane`: one at a time, a few waiting, else 503
    ``REPORT_BUSY`` as a page), and stored with the link: later GETs, from any worker
    process, serve the same bytes (red team F2, F12)."""
    from signing_service.reporting.lane import lane_of
    from signing_service.reporting.pdf import render_report_pdf

    store = report_store(request, services)
    try:
        kept = await in_lane(store.get, token)
        if kept is None:
            return _expired_page(services)
        pdf = kept.pdf
        if pdf is None:
            entry = json.loads(kept.entry or b"{}")

            async def render_once() -> bytes:
                # Another request (or worker) may have rendered it while this one waited.
                again = await in_lane(store.get, token)
                if again is not None and again.pdf is not None:
                    return again.pdf
                rendered = await in_lane(
                    render_report_pdf,
                    services,
                    entry["report"],
                    filename=entry.get("filename"),
                    expected_public_id=entry.get("expected_public_id"),
                )
                return await in_lane(store.keep_pdf, token, rendered)

            pdf = await lane_of(request.app.state).run(render_once)
    except errors.ServiceError as e:
        headers = dict(e.headers)
        if e.status == 503:
            headers.setdefault("Retry-After", str(services.settings.retry_after_seconds))
        return render(
            "error.html",
            status=e.status,
            headers=headers or None,
            title="Chưa lập được báo cáo PDF",
            message=e.message,
            code=e.code,
            show_form=False,
            **_limits(services),
        )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{kept.file_name}"',
            "Cache-Control": "no-store",
        },
    )


def _expired_page(services: Services) -> HTMLResponse:
    return render(
        "error.html",
        status=404,
        title="Báo cáo đã hết hạn",
        message=(
            "Báo cáo chỉ được giữ 15 phút sau khi xác minh và không lưu tệp của bạn. Hãy "
            "tải tệp lên để xác minh lại, rồi tải báo cáo."
        ),
        code="NOT_FOUND",
        show_form=True,
        **_limits(services),
    )


@router.api_route(FORM_PATH + "/{public_id}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def record_page(
    public_id: str, services: AppServices, in_lane: VerificationThreads
) -> HTMLResponse:
    """The registry record a QR code links to; unknown or malformed id: the friendly 404."""
    registry = await _record_view(services, in_lane, public_id)
    if registry is None:
        return render(
            "error.html",
            status=404,
            title="Không tìm thấy văn bản",
            message=(
                "Không có văn bản nào mang mã này trong sổ đăng ký của dịch vụ. Hãy kiểm tra "
                "lại mã QR hoặc đường liên kết (có thể bị chép thiếu), hoặc tải tệp PDF lên để "
                "xác minh chữ ký số."
            ),
            code="REGISTRY_RECORD_NOT_FOUND",
            show_form=True,
            **_limits(services),
        )
    return render("record.html", registry=registry, error=None, **_limits(services))
