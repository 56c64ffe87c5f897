"""Extension of signed documents (PAdES B-LT, B-LTA, archive timestamp renewal) and document
versions (issue 12; services/extension.py): ``POST /v1/documents/{id}/extensions``, ``GET
/v1/documents/{id}/versions`` and ``POST /v1/extensions`` (an uploaded signed PDF)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from signing_service.api import schemas
from signing_service.api.deps import (
    AppServices,
    Client,
    InWorker,
    UniqueKeysRoute,
    actor_of,
    document_out,
    read_upload,
)
from signing_service.api.downloads import attachment_disposition
from signing_service.api.signatures import CLEAN, SINGLE_VALUED
from signing_service.services.documents import DocumentView, check_filename
from signing_service.services.registry import public_link
from signing_service.timefmt import api_time

if TYPE_CHECKING:
    from signing_service.store.models import Document

# JSON bodies may not repeat a key (deps.UniqueKeysRoute).
router = APIRouter(route_class=UniqueKeysRoute)

ERRORS = {
    404: {"model": schemas.ErrorBody},
    409: {"model": schemas.ErrorBody},
    422: {"model": schemas.ErrorBody},
    502: {"model": schemas.ErrorBody},
    503: {"model": schemas.ErrorBody},
}


def _version_out(doc: Document, level: str | None, latest: bool) -> schemas.VersionOut:
    return schemas.VersionOut(
        id=doc.id,
        version=doc.version or 1,
        level=level,
        previous_version_id=doc.previous_version_id,
        sha256=doc.sha256,
        size=doc.size,
        created_at=api_time(doc.created_at),
        archive_tsa_not_after=(
            api_time(doc.archive_tsa_not_after) if doc.archive_tsa_not_after else None
        ),
        latest=latest,
        download_url=f"/v1/documents/{doc.id}/content",
    )


@router.post(
    "/v1/documents/{document_id}/extensions",
    status_code=201,
    response_model=schemas.ExtensionOut,
    tags=["văn bản"],
    summary="Nâng cấp chữ ký của văn bản đã lưu lên B-LT hoặc B-LTA (tạo phiên bản mới)",
    responses=ERRORS,
)
async def extend_document(
    document_id: str,
    body: schemas.ExtensionIn,
    caller: Client,
    services: AppServices,
    in_worker: InWorker,
    response: Response,
) -> schemas.ExtensionOut:
    from signing_service.services.extension import extend_stored

    result = await in_worker(
        extend_stored,
        services,
        caller.agency,
        document_id,
        body.level,
        actor=actor_of(caller),
    )
    doc = result.document
    response.headers["Location"] = f"/v1/documents/{doc.id}"
    registry = None
    if result.public_id is not None:
        registry = schemas.RegistryRefOut(
            public_id=result.public_id,
            link=public_link(services.settings.public_base_url, result.public_id),
        )
    return schemas.ExtensionOut(
        document=document_out(DocumentView.of(doc)),
        version=doc.version,
        level=result.level,
        previous_level=result.level_before,
        previous_document_id=result.previous.id,
        renewed=result.renewed,
        archive_tsa_not_after=(
            api_time(doc.archive_tsa_not_after) if doc.archive_tsa_not_after else None
        ),
        registry=registry,
    )


@router.get(
    "/v1/documents/{document_id}/versions",
    response_model=schemas.VersionsOut,
    tags=["văn bản"],
    summary="Các phiên bản của một văn bản đã ký (bản ký, các bản nâng cấp/gia hạn)",
    responses={404: {"model": schemas.ErrorBody}},
)
async def document_versions(
    document_id: str, caller: Client, services: AppServices, in_worker: InWorker
) -> schemas.VersionsOut:
    from signing_service.services.extension import level_of, version_line

    def read() -> schemas.VersionsOut:
        line = version_line(services, caller.agency_id, document_id)
        latest = line[-1]
        return schemas.VersionsOut(
            document_id=document_id,
            latest_document_id=latest.id,
            versions=[
                _version_out(doc, level_of(services, doc), doc.id == latest.id) for doc in line
            ],
        )

    return await in_worker(read)


@router.post(
    "/v1/extensions",
    tags=["ký số"],
    summary="Nâng cấp chữ ký của một tệp PDF đã ký được tải lên (trả về tệp đã nâng cấp)",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}},
        **ERRORS,
    },
    dependencies=SINGLE_VALUED,
)
async def extend_uploaded(
    caller: Client,
    services: AppServices,
    in_worker: InWorker,
    file: Annotated[UploadFile, File(description="Tệp PDF đã ký cần nâng cấp")],
    level: Annotated[
        str,
        Form(description="B-LT hoặc B-LTA (B-LTA trên tệp B-LTA: gia hạn)", max_length=16),
        CLEAN,
    ],
) -> Response:
    from signing_service.services.extension import extend_upload

    filename = check_filename(file.filename)
    data = await read_upload(file, services.settings)
    result = await in_worker(
        extend_upload,
        services,
        caller.agency,
        data,
        level,
        actor=actor_of(caller),
        filename=filename,
    )
    stem = (filename or "tai-lieu.pdf").rsplit(".", 1)[0]
    name = f"{stem}.{result.level.lower()}.pdf"
    return Response(
        result.pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": attachment_disposition(name),
            "X-Content-SHA256": hashlib.sha256(result.pdf).hexdigest(),
            "X-Signature-Level": result.level,
            "X-Previous-Signature-Level": result.level_before,
        },
    )
