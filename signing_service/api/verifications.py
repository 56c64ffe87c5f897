"""Public verification of every signature and timestamp in a PDF (``/v1/verifications``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Response, UploadFile

from signing_service.api import schemas
from signing_service.api.deps import AppServices, VerificationThreads, read_upload

# The verification use case is imported by its endpoint on first use: it pulls in pyHanko
# (~30 MB), which a process serving only attachments never needs.

router = APIRouter()


@router.post(
    "/v1/verifications",
    response_model=schemas.VerificationReport,
    tags=["xác minh"],
    summary="Xác minh mọi chữ ký số và dấu thời gian trong một tài liệu PDF (công khai)",
    responses={
        413: {"model": schemas.ErrorBody},
        429: {"model": schemas.ErrorBody},
        503: {"model": schemas.ErrorBody},
    },
)
async def create_verification(
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
) -> Any:
    from signing_service.services.verification import (
        parse_validation_time,
        verify_document_json,
    )

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
    # Already serialised (and shaped by the report's own to_dict): returned as is.
    return Response(body, media_type="application/json")
