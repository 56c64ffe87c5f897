"""Public verification of every signature and timestamp in a PDF (``/v1/verifications``).

The answer is the JSON report by default; ``?format=pdf`` or ``Accept: application/pdf`` asks
for the printable report, sealed by the service (:mod:`signing_service.reporting.pdf`). Both run
in the public verification lane (its threads, limits and rate), never in the threads agencies
sign with."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Query, Request, Response, UploadFile

from signing_service import errors
from signing_service.api import schemas
from signing_service.api.deps import AppServices, VerificationThreads, read_upload
from signing_service.api.signatures import SINGLE_VALUED

# The verification use case is imported by its endpoint on first use: it pulls in pyHanko
# (~30 MB), which a process serving only attachments never needs.

router = APIRouter()

FORMATS = ("json", "pdf")
PDF = "application/pdf"
JSON = "application/json"


def _accept_q(accept: str) -> list[tuple[str, float]]:
    """The media ranges of an ``Accept`` header with their weights (RFC 9110 §12.5.1), in
    order; a malformed weight counts as 0 (not acceptable), never as an error."""
    out = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        out.append((media.lower(), q))
    return out


def wants_pdf(format: str | None, accept: str | None) -> bool:
    """Whether the caller asked for the PDF report: ``format`` (``json`` | ``pdf``) decides
    when given (anything else: :class:`errors.UnsupportedReportFormat`, 406); else the
    ``Accept`` header, when it names ``application/pdf`` with a weight above 0 and above an
    explicit ``application/json`` (equal weights: the first listed). Wildcards (``*/*``, a
    browser's form post) keep the JSON default, as does an Accept naming neither."""
    if format is not None:
        chosen = format.strip().lower()
        if chosen not in FORMATS:
            raise errors.UnsupportedReportFormat(details={"format": format[:32]})
        return chosen == "pdf"
    if not accept:
        return False
    ranges = _accept_q(accept)
    pdf = next(((i, q) for i, (m, q) in enumerate(ranges) if m == PDF), None)
    if pdf is None or pdf[1] <= 0:
        return False
    json_range = next(((i, q) for i, (m, q) in enumerate(ranges) if m == JSON), None)
    if json_range is None:
        return True
    return pdf[1] > json_range[1] or (pdf[1] == json_range[1] and pdf[0] < json_range[0])


@router.post(
    "/v1/verifications",
    # A field the endpoint does not take (a misspelt validation_time) or one sent twice is
    # refused, never ignored (new user 18 #5): as on the signing routes.
    dependencies=SINGLE_VALUED,
    response_model=schemas.VerificationReport,
    tags=["xác minh"],
    summary="Xác minh mọi chữ ký số và dấu thời gian trong một tài liệu PDF (công khai)",
    description=(
        "Trả về báo cáo JSON (mặc định). Với `?format=pdf` hoặc `Accept: application/pdf`: "
        "báo cáo in được (A4, tiếng Việt) do dịch vụ ký số bằng con dấu của mình và gắn dấu "
        "thời gian (PAdES B-T)."
    ),
    responses={
        200: {
            "content": {PDF: {"schema": {"type": "string", "format": "binary"}}},
            "description": "Báo cáo xác minh (JSON, hoặc PDF đã được dịch vụ ký số)",
        },
        406: {"model": schemas.ErrorBody},
        413: {"model": schemas.ErrorBody},
        429: {"model": schemas.ErrorBody},
        503: {"model": schemas.ErrorBody},
    },
)
async def create_verification(
    request: Request,
    services: AppServices,
    in_lane: VerificationThreads,
    file: Annotated[UploadFile, File(description="Tài liệu PDF cần xác minh")],
    validation_time: Annotated[
        str | None,
        Form(
            description=(
                "Xác minh tại thời điểm này thay vì hiện tại (ISO 8601 có múi giờ, ví dụ "
                "2030-01-01T00:00:00+07:00), như EU DSS cho phép, để kiểm toán"
            ),
            max_length=64,
        ),
    ] = None,
    format: Annotated[
        str | None,
        Query(description="Định dạng kết quả: json (mặc định) hoặc pdf", max_length=32),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    from signing_service.services.verification import (
        parse_validation_time,
        verify_document_json,
    )

    # Decided before the upload is read or verified: an unknown format costs nothing.
    as_pdf = wants_pdf(format, accept)
    moment = parse_validation_time(validation_time) if validation_time else None
    data = await read_upload(file, services.settings)
    # The verification itself runs in the verification worker processes; a thread of the
    # public lane only waits for it (without worker processes it runs in that thread): the
    # threads agencies sign with stay free. Counted, not audited one by one.
    body = await in_lane(
        verify_document_json,
        services,
        data,
        actor="public",
        validation_time=moment,
        anonymous=True,
    )
    # The same URL answers in two formats: caches must key on Accept (RFC 9110 §12.5.5).
    vary = {"Vary": "Accept"}
    if not as_pdf:
        # Already serialised (and shaped by the report's own to_dict): returned as is.
        return Response(body, media_type=JSON, headers=vary)
    from signing_service.reporting.lane import lane_of
    from signing_service.reporting.pdf import render_report_pdf, report_file_name

    report = json.loads(body)
    # Typesetting and sealing run in the public lane's threads, one report at a time per
    # process (the render lane: a few waiting, then 503 REPORT_BUSY), so anonymous report
    # requests cannot slow agency signing (red team F2).
    pdf = await lane_of(request.app.state).run(
        lambda: in_lane(render_report_pdf, services, report, filename=file.filename)
    )
    # The name is ours (the file's hash), never the uploaded name: no header injection.
    name = report_file_name(report)
    return Response(
        pdf,
        media_type=PDF,
        headers={**vary, "Content-Disposition": f'attachment; filename="{name}"'},
    )
