"""Signed documents: metadata and content (``/v1/documents``), within the caller's agency."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from signing_service.api import schemas
from signing_service.api.deps import AppServices, Client, InWorker, document_out
from signing_service.api.downloads import attachment_disposition
from signing_service.services.documents import DocumentView, get_document, read_content

router = APIRouter()


@router.get(
    "/v1/documents/{document_id}",
    summary="Thông tin một văn bản đã lưu (gốc hoặc đã ký)",
    response_model=schemas.DocumentOut,
    tags=["văn bản"],
    responses={404: {"model": schemas.ErrorBody}},
)
async def document_meta(
    document_id: str, caller: Client, services: AppServices, in_worker: InWorker
) -> schemas.DocumentOut:
    doc = await in_worker(get_document, services, caller.agency_id, document_id)
    return document_out(DocumentView.of(doc))


@router.get(
    "/v1/documents/{document_id}/content",
    summary="Tải nội dung PDF của một văn bản đã lưu",
    tags=["văn bản"],
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}, 404: {"model": schemas.ErrorBody}},
)
async def document_content(
    document_id: str, caller: Client, services: AppServices, in_worker: InWorker
) -> Response:
    doc = await in_worker(get_document, services, caller.agency_id, document_id)
    data = await in_worker(read_content, services, doc)
    name = doc.filename or f"{doc.id}.pdf"
    return Response(
        data,
        media_type=doc.media_type,
        headers={
            "Content-Disposition": attachment_disposition(name),
            "X-Content-SHA256": doc.sha256,
            # As attachments' content: a browser must not sniff a PDF's bytes as HTML (R23B-9).
            "X-Content-Type-Options": "nosniff",
        },
    )
