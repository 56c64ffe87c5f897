"""Dossier attachments (``/v1/dossiers/{code}/attachments``, ``/v1/attachments``): screened
uploads, listing, metadata, content (a short-lived presigned URL or a verified stream), legal
hold and deletion, within the caller's agency."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from signing_service import errors
from signing_service._memory import release_memory
from signing_service.api import schemas
from signing_service.api.deps import Admin, AppServices, Client, InWorker, UniqueKeysRoute, actor_of
from signing_service.api.downloads import attachment_disposition
from signing_service.api.signatures import single_headers
from signing_service.api.uploads import receive_multipart
from signing_service.services import attachments
from signing_service.services.documents import check_dossier_code, printable
from signing_service.store.models import Agency

log = logging.getLogger(__name__)

# After moving a file bigger than this, freed buffers are handed back to the system.
LARGE_TRANSFER = 8 * 1024 * 1024

# JSON bodies may not repeat a key (deps.UniqueKeysRoute).
router = APIRouter(route_class=UniqueKeysRoute)


_END = object()


async def prefetched(chunks: Iterator[bytes], depth: int = 4) -> AsyncIterator[bytes]:
    """Iterate a blocking iterator (storage read + digest) in its own thread, up to ``depth``
    chunks ahead, so reading and hashing the next chunk overlaps sending this one."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    slots = threading.Semaphore(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not slots.acquire(timeout=0.5):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
            loop.call_soon_threadsafe(queue.put_nowait, _END)
        except BaseException as e:  # noqa: BLE001 - re-raised in the response task
            loop.call_soon_threadsafe(queue.put_nowait, e)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    threading.Thread(target=produce, name="download", daemon=True).start()
    sent = 0
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                log.error("download aborted: %s", type(item).__name__)
                raise item
            slots.release()
            sent += len(item)
            yield item
    finally:
        stop.set()
        if sent > LARGE_TRANSFER:
            release_memory()


def _attachment_out(view: attachments.AttachmentView) -> schemas.AttachmentOut:
    return schemas.AttachmentOut(**view.__dict__, content_url=f"/v1/attachments/{view.id}/content")


@router.post(
    "/v1/dossiers/{dossier_code}/attachments",
    status_code=201,
    response_model=schemas.AttachmentOut,
    tags=["hồ sơ"],
    summary="Lưu một thành phần hồ sơ (tệp được kiểm tra trước khi nhận)",
    description=(
        "multipart/form-data với trường `file` và `component`. Tệp được nhận dạng nội dung, "
        "kiểm tra tệp đa định dạng, nội dung chủ động trong PDF, zip bomb và mã độc (ClamAV) "
        "trước khi lưu. Gửi lại cùng `Idempotency-Key` và cùng nội dung trả về bản ghi cũ "
        "(200)."
    ),
    dependencies=[Depends(single_headers)],
    responses={
        200: {"model": schemas.AttachmentOut},
        401: {"model": schemas.ErrorBody},
        409: {"model": schemas.ErrorBody},
        413: {"model": schemas.ErrorBody},
        422: {"model": schemas.ErrorBody},
        503: {"model": schemas.ErrorBody},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "component"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "component": {"type": "string", "example": "application"},
                        },
                    }
                }
            },
        }
    },
)
async def attachment_upload(
    dossier_code: str,
    request: Request,
    caller: Client,
    services: AppServices,
    in_worker: InWorker,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    settings = services.settings
    agency: Agency = caller.agency
    actor = actor_of(caller)
    base = {"dossier_code": printable(dossier_code)}
    try:
        # Refused before the body is read.
        check_dossier_code(dossier_code or "-", agency.code)
        attachments.check_idempotency_key(idempotency_key)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_attachment_bytes + 64 * 1024:
            raise errors.PayloadTooLarge(
                f"Tệp vượt quá dung lượng cho phép "
                f"({settings.max_attachment_bytes // (1024 * 1024)} MB).",
                details={"max_bytes": settings.max_attachment_bytes},
            )
    except errors.ServiceError as e:
        await in_worker(attachments.audit_refusal, services, agency, actor, e.code, base)
        raise

    def check_field(name: str, value: str) -> None:
        if name == "component":
            attachments.retention_days(services, value)

    pipelined = getattr(services.store, "streams_while_receiving", False)
    try:
        received = await receive_multipart(
            request,
            tmp_dir=settings.upload_tmp_path,
            file_field="file",
            max_file_bytes=settings.max_attachment_bytes,
            check_field=check_field,
            # MinIO: the object is uploaded while the body arrives (screened afterwards,
            # deleted unless accepted), so storing costs no time after the last byte.
            sink_factory=(lambda: attachments.StagedObject(services, agency))
            if pipelined
            else None,
        )
    except errors.ServiceError as e:
        await in_worker(attachments.audit_refusal, services, agency, actor, e.code, base)
        raise
    upload = received.upload
    staged = received.sink if isinstance(received.sink, attachments.StagedObject) else None
    try:
        if staged is not None and upload is not None:
            try:
                written = await in_worker(staged.finish)
                if written.size != upload.size:
                    raise errors.StorageIntegrity(
                        "Nội dung ghi vào kho lưu trữ khác với nội dung đã nhận."
                    )
                upload = dataclasses.replace(upload, sha256=written.sha256)
            except errors.ServiceError as e:
                await in_worker(attachments.audit_refusal, services, agency, actor, e.code, base)
                raise
        missing = [
            name
            for name, present in (
                ("file", upload is not None),
                ("component", "component" in received.fields),
            )
            if not present
        ]
        if missing:
            error = errors.InvalidRequest(
                "Yêu cầu cần trường file (tệp) và component (thành phần hồ sơ).",
                details={"fields": missing},
            )
            await in_worker(attachments.audit_refusal, services, agency, actor, error.code, base)
            raise error
        view, created = await in_worker(
            attachments.store_attachment,
            services,
            agency,
            dossier_code=dossier_code,
            component=received.fields["component"],
            upload=upload,
            idempotency_key=idempotency_key,
            actor=actor,
            staged=staged,
        )
    except BaseException:
        if staged is not None:
            await in_worker(staged.discard)  # refused before store_attachment took it
        raise
    finally:
        if upload is not None:
            upload.path.unlink(missing_ok=True)
            if upload.size > LARGE_TRANSFER:
                release_memory()
    response.headers["Location"] = f"/v1/attachments/{view.id}"
    if not created:
        response.status_code = 200
    return _attachment_out(view)


@router.post("/v1/dossiers//attachments", include_in_schema=False)
async def attachment_upload_without_dossier(
    caller: Client, services: AppServices, in_worker: InWorker
) -> Any:
    # An empty dossier code would otherwise fall through to a bare 404.
    error = errors.InvalidDossierCode("Thiếu mã hồ sơ trong đường dẫn.")
    await in_worker(
        attachments.audit_refusal, services, caller.agency, actor_of(caller), error.code, {}
    )
    raise error


@router.get(
    "/v1/dossiers/{dossier_code}/attachments",
    response_model=list[schemas.AttachmentOut],
    tags=["hồ sơ"],
    summary="Các thành phần hồ sơ đã lưu của một hồ sơ",
    responses={422: {"model": schemas.ErrorBody}},
)
async def attachment_list(
    dossier_code: str, caller: Client, services: AppServices, in_worker: InWorker
) -> list[schemas.AttachmentOut]:
    views = await in_worker(
        attachments.list_attachments, services, caller.agency, dossier_code, actor_of(caller)
    )
    return [_attachment_out(v) for v in views]


@router.get(
    "/v1/attachments/{attachment_id}",
    summary="Thông tin một tệp đính kèm của hồ sơ",
    response_model=schemas.AttachmentOut,
    tags=["hồ sơ"],
    responses={404: {"model": schemas.ErrorBody}},
)
async def attachment_meta(
    attachment_id: str, caller: Client, services: AppServices, in_worker: InWorker
) -> schemas.AttachmentOut:
    row = await in_worker(
        attachments.get_attachment, services, caller.agency, attachment_id, actor_of(caller)
    )
    return _attachment_out(attachments.AttachmentView.of(row))


@router.get(
    "/v1/attachments/{attachment_id}/content",
    tags=["hồ sơ"],
    response_class=Response,
    summary="Tải nội dung tệp (mã băm SHA-256 được kiểm tra khi đọc)",
    responses={
        200: {"content": {"application/octet-stream": {}}},
        307: {"description": "URL tải trực tiếp có thời hạn ngắn (khi được cấu hình)"},
        404: {"model": schemas.ErrorBody},
        500: {"model": schemas.ErrorBody},
        503: {"model": schemas.ErrorBody},
    },
)
async def attachment_content(
    attachment_id: str,
    caller: Client,
    services: AppServices,
    in_worker: InWorker,
    variant: Annotated[
        str, Query(pattern="^(original|sanitized)$", description="original | sanitized")
    ] = "original",
) -> Response:
    sanitized = variant == "sanitized"
    actor = actor_of(caller)
    row = await in_worker(attachments.get_attachment, services, caller.agency, attachment_id, actor)
    url = await in_worker(attachments.presigned_url, services, row, sanitized)
    if url is not None:
        _, sha256, _ = attachments.variant(row, sanitized)
        return RedirectResponse(url, status_code=307, headers={"X-Content-SHA256": sha256})
    content = await in_worker(
        attachments.open_content, services, caller.agency, row, sanitized=sanitized, actor=actor
    )
    headers = {
        "Content-Disposition": attachment_disposition(content.filename),
        "X-Content-SHA256": content.sha256,
        "Content-Length": str(content.size),
        "X-Content-Type-Options": "nosniff",
    }
    if content.body is not None:
        return Response(content.body, media_type=content.media_type, headers=headers)

    # If the digest does not match at the end, the held-back last chunk is never sent: the
    # response ends short of its Content-Length and the client sees a failed download,
    # never a complete-looking corrupted file.
    return StreamingResponse(
        prefetched(content.chunks), media_type=content.media_type, headers=headers
    )


@router.put(
    "/v1/attachments/{attachment_id}/legal-hold",
    response_model=schemas.AttachmentOut,
    tags=["hồ sơ"],
    summary="Bật/tắt phong tỏa pháp lý (legal hold): không thể xóa khi đang bật",
    responses={403: {"model": schemas.ErrorBody}, 404: {"model": schemas.ErrorBody}},
)
async def attachment_legal_hold(
    attachment_id: str,
    body: schemas.LegalHoldIn,
    caller: Admin,
    services: AppServices,
    in_worker: InWorker,
) -> schemas.AttachmentOut:
    view = await in_worker(
        attachments.set_legal_hold,
        services,
        caller.agency,
        attachment_id,
        body.enabled,
        actor_of(caller),
    )
    return _attachment_out(view)


@router.delete(
    "/v1/attachments/{attachment_id}",
    status_code=204,
    tags=["hồ sơ"],
    summary="Xóa tệp (bị từ chối khi còn thời hạn lưu trữ hoặc đang phong tỏa)",
    responses={404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}},
)
async def attachment_delete(
    attachment_id: str, caller: Client, services: AppServices, in_worker: InWorker
) -> Response:
    await in_worker(
        attachments.delete_attachment, services, caller.agency, attachment_id, actor_of(caller)
    )
    return Response(status_code=204)
