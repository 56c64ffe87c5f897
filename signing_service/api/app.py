"""HTTP API (FastAPI). One error shape for every failure: ``{"code", "message"}`` with a
stable code, the HTTP status and a Vietnamese message; never a traceback."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signing_service import errors
from signing_service._memory import release_memory
from signing_service.api import documents, schemas, signatures, verifications
from signing_service.api.deps import (
    Admin,
    Client,
    WorkerThreads,
    actor_of,
    error_response,
)
from signing_service.api.uploads import receive_multipart
from signing_service.services import attachments
from signing_service.services.container import Services
from signing_service.services.documents import (
    check_dossier_code,
)
from signing_service.store.models import Agency

# The signing, two-step, profile and verification use cases are imported by their endpoints
# on first use: they pull in pyHanko (~30 MB), which a process serving only attachments never
# needs.
log = logging.getLogger(__name__)

HTTP_CODES = {
    400: ("INVALID_REQUEST", "Yêu cầu không hợp lệ."),
    401: ("UNAUTHENTICATED", "Thiếu khóa API hoặc khóa API không hợp lệ."),
    403: ("FORBIDDEN", "Khóa API không có quyền thực hiện thao tác này."),
    404: ("NOT_FOUND", "Không tìm thấy tài nguyên được yêu cầu."),
    405: ("METHOD_NOT_ALLOWED", "Phương thức HTTP không được hỗ trợ cho địa chỉ này."),
    413: ("FILE_TOO_LARGE", "Tệp vượt quá dung lượng cho phép."),
}


# After moving a file bigger than this, freed buffers are handed back to the system.
LARGE_TRANSFER = 8 * 1024 * 1024
ATTACHMENT_UPLOAD = re.compile(r"^/v1/dossiers/[^/]+/attachments$")


class BodyLimit:
    """Refuse bodies over the limit while they arrive, before anything is parsed or spooled."""

    def __init__(
        self, app: ASGIApp, limit: int, limits: list[tuple[re.Pattern[str], int]] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.limits = limits or []

    def _limit_for(self, path: str) -> int:
        for pattern, limit in self.limits:
            if pattern.match(path):
                return limit
        return self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope.get("path", ""))
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise errors.PayloadTooLarge()
            return message

        await self.app(scope, limited, send)

    async def _reject(self, send: Send) -> None:
        response = error_response(413, *HTTP_CODES[413])
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


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


def create_app(services: Services) -> FastAPI:
    settings = services.settings

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="Dịch vụ ký số và xác minh chữ ký số văn bản",
        description=(
            "Ký số PAdES (B-B, B-T, B-LT, B-LTA) và xác minh chữ ký số trên tài liệu PDF theo "
            "Thông tư 15/2025/TT-BKHCN và ETSI EN 319 102-1. Mọi lỗi trả về "
            '`{"code", "message"}` với mã lỗi ổn định và thông báo tiếng Việt.'
        ),
        version="0.1.0",
        lifespan=lifespan,
        responses={422: {"model": schemas.ErrorBody}},
    )
    app.state.services = services
    # One limiter for the whole app: at most settings.worker_threads blocking calls at a time.
    app.state.worker_threads = in_worker = WorkerThreads(settings.worker_threads)
    # Starlette spools each uploaded file to disk above 1 MiB; typical dossier PDFs are a few
    # MB, and the extra write + read back cost more than the signature itself. Keep uploads up
    # to this size in memory (the body limit below still bounds the total).
    MultiPartParser.spool_max_size = settings.upload_spool_bytes
    # Multipart framing adds a little to the file itself.
    app.add_middleware(
        BodyLimit,
        limit=settings.max_upload_bytes + 64 * 1024,
        limits=[
            (re.compile(r"^/v1/signatures/batch$"), settings.max_batch_bytes + 256 * 1024),
            # A backstop: the endpoint itself refuses (and audits) oversized uploads first.
            (ATTACHMENT_UPLOAD, settings.max_attachment_bytes + 1024 * 1024),
        ],
    )

    @app.exception_handler(errors.ServiceError)
    async def _service_error(_r: Request, exc: errors.ServiceError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(_r: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [".".join(str(p) for p in e.get("loc", ())[1:]) for e in exc.errors()]
        return error_response(
            422,
            "INVALID_REQUEST",
            "Yêu cầu thiếu trường bắt buộc hoặc có trường không hợp lệ.",
            details={"fields": fields},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = HTTP_CODES.get(exc.status_code, ("HTTP_ERROR", "Yêu cầu không hợp lệ."))
        return error_response(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def _unexpected(_r: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error: %s", type(exc).__name__)
        return error_response(500, "INTERNAL_ERROR", "Lỗi nội bộ của dịch vụ.")

    @app.get("/healthz", response_model=schemas.Health, tags=["vận hành"])
    async def healthz() -> schemas.Health:
        return schemas.Health(status="ok")

    @app.get(
        "/readyz",
        response_model=schemas.Health,
        tags=["vận hành"],
        responses={503: {"model": schemas.ErrorBody}},
    )
    async def readyz() -> Any:
        def probe() -> None:
            with services.db.transaction() as session:
                session.execute(text("SELECT 1"))
            services.store.check()

        try:
            await in_worker(probe)
        except Exception as e:  # noqa: BLE001
            log.warning("not ready: %s", type(e).__name__)
            return error_response(
                503,
                "NOT_READY",
                "Dịch vụ chưa sẵn sàng.",
            )
        return schemas.Health(status="ready")

    app.include_router(signatures.router)

    @app.get(
        "/v1/admin/profiles",
        response_model=list[schemas.ProfileOut],
        tags=["quản trị"],
        summary="Các cấu hình ký số của cơ quan",
    )
    async def profiles_list(caller: Admin) -> list[schemas.ProfileOut]:
        from signing_service.services.profiles import list_profiles

        views = await in_worker(list_profiles, services, caller.agency)
        return [schemas.ProfileOut(**v.__dict__) for v in views]

    @app.post(
        "/v1/admin/profiles",
        status_code=201,
        response_model=schemas.ProfileOut,
        tags=["quản trị"],
        summary="Tạo cấu hình ký số (khóa và chứng thư được kiểm tra)",
        responses={
            403: {"model": schemas.ErrorBody},
            409: {"model": schemas.ErrorBody},
            422: {"model": schemas.ErrorBody},
        },
    )
    async def profiles_create(body: schemas.ProfileIn, caller: Admin) -> schemas.ProfileOut:
        from signing_service.services.profiles import create_profile

        view = await in_worker(
            create_profile,
            services,
            caller.agency,
            body.model_dump(),
            actor=actor_of(caller),
        )
        return schemas.ProfileOut(**view.__dict__)

    @app.get(
        "/v1/admin/profiles/{name}",
        response_model=schemas.ProfileOut,
        tags=["quản trị"],
        responses={404: {"model": schemas.ErrorBody}},
    )
    async def profiles_get(name: str, caller: Admin) -> schemas.ProfileOut:
        from signing_service.services.profiles import get_profile

        view = await in_worker(get_profile, services, caller.agency, name)
        return schemas.ProfileOut(**view.__dict__)

    @app.patch(
        "/v1/admin/profiles/{name}",
        response_model=schemas.ProfileOut,
        tags=["quản trị"],
        responses={404: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody}},
    )
    async def profiles_update(
        name: str, body: schemas.ProfileChange, caller: Admin
    ) -> schemas.ProfileOut:
        from signing_service.services.profiles import update_profile

        view = await in_worker(
            update_profile,
            services,
            caller.agency,
            name,
            body.model_dump(exclude_unset=True),
            actor=actor_of(caller),
        )
        return schemas.ProfileOut(**view.__dict__)

    @app.delete(
        "/v1/admin/profiles/{name}",
        status_code=204,
        tags=["quản trị"],
        responses={404: {"model": schemas.ErrorBody}},
    )
    async def profiles_disable(name: str, caller: Admin) -> Response:
        from signing_service.services.profiles import disable_profile

        await in_worker(disable_profile, services, caller.agency, name, actor=actor_of(caller))
        return Response(status_code=204)

    app.include_router(documents.router)

    app.include_router(verifications.router)

    def _attachment_out(view: attachments.AttachmentView) -> schemas.AttachmentOut:
        return schemas.AttachmentOut(
            **view.__dict__, content_url=f"/v1/attachments/{view.id}/content"
        )

    @app.post(
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
        response: Response,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> Any:
        agency: Agency = caller.agency
        actor = actor_of(caller)
        base = {"dossier_code": dossier_code[:64]}
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
                    await in_worker(
                        attachments.audit_refusal, services, agency, actor, e.code, base
                    )
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
                await in_worker(
                    attachments.audit_refusal, services, agency, actor, error.code, base
                )
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

    @app.post("/v1/dossiers//attachments", include_in_schema=False)
    async def attachment_upload_without_dossier(caller: Client) -> Any:
        # An empty dossier code would otherwise fall through to a bare 404.
        error = errors.InvalidDossierCode("Thiếu mã hồ sơ trong đường dẫn.")
        await in_worker(
            attachments.audit_refusal, services, caller.agency, actor_of(caller), error.code, {}
        )
        raise error

    @app.get(
        "/v1/dossiers/{dossier_code}/attachments",
        response_model=list[schemas.AttachmentOut],
        tags=["hồ sơ"],
        summary="Các thành phần hồ sơ đã lưu của một hồ sơ",
        responses={422: {"model": schemas.ErrorBody}},
    )
    async def attachment_list(dossier_code: str, caller: Client) -> list[schemas.AttachmentOut]:
        views = await in_worker(
            attachments.list_attachments, services, caller.agency, dossier_code, actor_of(caller)
        )
        return [_attachment_out(v) for v in views]

    @app.get(
        "/v1/attachments/{attachment_id}",
        response_model=schemas.AttachmentOut,
        tags=["hồ sơ"],
        responses={404: {"model": schemas.ErrorBody}},
    )
    async def attachment_meta(attachment_id: str, caller: Client) -> schemas.AttachmentOut:
        row = await in_worker(
            attachments.get_attachment, services, caller.agency, attachment_id, actor_of(caller)
        )
        return _attachment_out(attachments.AttachmentView.of(row))

    @app.get(
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
        variant: Annotated[
            str, Query(pattern="^(original|sanitized)$", description="original | sanitized")
        ] = "original",
    ) -> Response:
        sanitized = variant == "sanitized"
        actor = actor_of(caller)
        row = await in_worker(
            attachments.get_attachment, services, caller.agency, attachment_id, actor
        )
        url = await in_worker(attachments.presigned_url, services, row, sanitized)
        if url is not None:
            _, sha256, _ = attachments.variant(row, sanitized)
            return RedirectResponse(url, status_code=307, headers={"X-Content-SHA256": sha256})
        content = await in_worker(
            attachments.open_content, services, caller.agency, row, sanitized=sanitized, actor=actor
        )
        ascii_name = content.filename.encode("ascii", "replace").decode().replace('"', "")
        headers = {
            "Content-Disposition": f'attachment; filename="{ascii_name}"',
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

    @app.put(
        "/v1/attachments/{attachment_id}/legal-hold",
        response_model=schemas.AttachmentOut,
        tags=["hồ sơ"],
        summary="Bật/tắt phong tỏa pháp lý (legal hold): không thể xóa khi đang bật",
        responses={403: {"model": schemas.ErrorBody}, 404: {"model": schemas.ErrorBody}},
    )
    async def attachment_legal_hold(
        attachment_id: str, body: schemas.LegalHoldIn, caller: Admin
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

    @app.delete(
        "/v1/attachments/{attachment_id}",
        status_code=204,
        tags=["hồ sơ"],
        summary="Xóa tệp (bị từ chối khi còn thời hạn lưu trữ hoặc đang phong tỏa)",
        responses={404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}},
    )
    async def attachment_delete(attachment_id: str, caller: Client) -> Response:
        await in_worker(
            attachments.delete_attachment, services, caller.agency, attachment_id, actor_of(caller)
        )
        return Response(status_code=204)

    return app
