"""HTTP API (FastAPI). One error shape for every failure: ``{"code", "message"}`` with a
stable code, the HTTP status and a Vietnamese message; never a traceback.

This module builds the application (middleware, error handlers, shared state); the routes live
in one router module per domain (``health``, ``signatures``, ``admin``, ``documents``,
``verifications``, ``attachments``), their shared dependencies in :mod:`.deps`."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartParser
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signing_service import errors, metrics
from signing_service.api import (
    admin,
    attachments,
    documents,
    evidence,
    extensions,
    health,
    observe,
    operator,
    registry,
    schemas,
    signatures,
    verifications,
)
from signing_service.api.cors import PublicCors
from signing_service.api.deps import WorkerThreads, error_response
from signing_service.api.edge import (
    BodyTimeout,
    PublicLane,
    RequestGuard,
    TokenBuckets,
    parse_trusted_proxies,
)
from signing_service.api.openapi import DocsShell, mount_docs
from signing_service.services.container import Services
from signing_service.store.db import connection_lost
from signing_service.web import routes as web
from signing_service.web.middleware import PageCompression, PageShell
from storage.base import observe_unavailable

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: ("INVALID_REQUEST", "Yêu cầu không hợp lệ."),
    401: ("UNAUTHENTICATED", "Thiếu khóa API hoặc khóa API không hợp lệ."),
    403: ("FORBIDDEN", "Khóa API không có quyền thực hiện thao tác này."),
    404: ("NOT_FOUND", "Không tìm thấy tài nguyên được yêu cầu."),
    405: ("METHOD_NOT_ALLOWED", "Phương thức HTTP không được hỗ trợ cho địa chỉ này."),
    413: ("FILE_TOO_LARGE", "Tệp vượt quá dung lượng cho phép."),
}


ATTACHMENT_UPLOAD = re.compile(r"^/v1/dossiers/[^/]+/attachments$")
VERIFICATIONS_PATH = "/v1/verifications"
# The page's uploads and PDF reports cost what an API verification costs: same buckets.
PAGE_VERIFY_PATH = web.FORM_PATH
PAGE_REPORT_PREFIX = web.PDF_PREFIX
# The anonymous registry lookup spends a token too (red team 11 F10: a public route).
REGISTRY_PREFIX = "/v1/registry/"
OPERATOR_API_KEYS = "/v1/operator/api-keys"


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


class ServiceApp(FastAPI):
    """FastAPI with :class:`~signing_service.api.observe.RequestObserver` around everything,
    Starlette's error middleware included, so that a 500 carries its request id and gets its
    access line and metrics like any other answer."""

    def build_middleware_stack(self) -> ASGIApp:
        return observe.RequestObserver(super().build_middleware_stack(), self.router.routes)


def create_app(services: Services) -> FastAPI:
    """The API application serving ``services`` (kept on ``app.state.services``, with one
    :class:`WorkerThreads` limiter of ``settings.worker_threads`` on
    ``app.state.worker_threads``)."""
    settings = services.settings

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.verification_prewarm and settings.verification_processes > 0:
            threading.Thread(
                target=services.prewarm_verification_pool,
                name="verification-prewarm",
                daemon=True,
            ).start()
        yield
        # Worker processes (--workers N) never close their services: keep no count behind.
        counter = services._lazy.get("verification_counter")
        if counter is not None:
            await anyio.to_thread.run_sync(counter.flush)  # type: ignore[attr-defined]

    # Object store failures, whichever backend and operation, in the storage error metric.
    observe_unavailable(metrics.storage_error)
    app = ServiceApp(
        title="Dịch vụ ký số và xác minh chữ ký số văn bản",
        description=(
            "Ký số PAdES (B-B, B-T, B-LT, B-LTA) và xác minh chữ ký số trên tài liệu PDF theo "
            "Thông tư 15/2025/TT-BKHCN và ETSI EN 319 102-1. Mọi lỗi trả về "
            '`{"code", "message"}` với mã lỗi ổn định và thông báo tiếng Việt.'
        ),
        version="0.1.0",
        lifespan=lifespan,
        responses={422: {"model": schemas.ErrorBody}},
        # Served from the service's own assets (api/openapi.py): FastAPI's pages load theirs
        # from a CDN, blank without internet. No ReDoc page (its bundle is not vendored).
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    # /metrics reports the preservation queue's depth and age (services/preservation.py).
    from signing_service.services.preservation import register_queue_probe

    register_queue_probe(services)
    # One limiter for the whole app: at most settings.worker_threads blocking calls at a time.
    app.state.worker_threads = WorkerThreads(settings.worker_threads)
    # The public lane waits for the verification worker processes in threads of its own, so
    # anonymous load never holds the threads agencies sign with (issue 9: ten verifications of
    # a 60-signature PDF held a one-page signature for 166 s). Two more than the pool takes
    # (its processes and waiting places): beyond that the pool answers VERIFICATION_BUSY at
    # once instead of queueing here.
    app.state.verification_threads = WorkerThreads(
        max(1, settings.verification_processes) + settings.verification_max_pending + 2
    )
    # Starlette spools each uploaded file to disk above 1 MiB; typical dossier PDFs are a few
    # MB, and the extra write + read back cost more than the signature itself. Keep uploads up
    # to this size in memory (the body limit below still bounds the total).
    MultiPartParser.spool_max_size = settings.upload_spool_bytes
    # Multipart framing adds a little to the file itself.
    app.add_middleware(
        BodyLimit,
        limit=settings.max_document_bytes + 64 * 1024,
        limits=[
            (re.compile(r"^/v1/signatures/batch$"), settings.max_batch_bytes + 256 * 1024),
            # A backstop: the endpoint itself refuses (and audits) oversized uploads first.
            (ATTACHMENT_UPLOAD, settings.max_attachment_bytes + 1024 * 1024),
        ],
    )

    # Outermost last: RequestGuard sees every request first, then the anonymous lane, then the
    # body timeout and the body size limit.
    app.add_middleware(
        BodyTimeout, timeout=settings.body_timeout_seconds, min_rate=settings.body_min_rate_bytes
    )
    app.add_middleware(
        PublicLane,
        rate_limited=lambda scope: (
            (
                scope.get("method") == "POST"
                and scope.get("path") in (VERIFICATIONS_PATH, PAGE_VERIFY_PATH)
            )
            or str(scope.get("path", "")).startswith((PAGE_REPORT_PREFIX, REGISTRY_PREFIX))
        ),
        buckets=TokenBuckets(settings.public_rate_per_minute, settings.public_rate_burst)
        if settings.public_rate_per_minute > 0
        else None,
        max_concurrent=settings.max_anonymous_requests,
        max_per_client=settings.max_anonymous_requests_per_client,
        trusted_proxies=parse_trusted_proxies(settings.trusted_proxies),
        retry_after=settings.retry_after_seconds,
        on_refused=lambda code: services.verification_counter.add(code, may_flush=False),
    )
    # CORS for the public verification API only, for the configured origins (api/cors.py);
    # outside the public lane so that its 429/503 answers reach the portal's page readable.
    app.add_middleware(PublicCors, origins=settings.cors_origins)
    app.add_middleware(RequestGuard)
    # Outermost: the citizen's page gets its security headers and HTML error pages whichever
    # layer answered (the edge's limits included).
    max_mb = settings.max_document_bytes // (1024 * 1024)
    base_mb = settings.max_upload_bytes // (1024 * 1024)
    app.add_middleware(
        PageShell,
        render_error=lambda status, code, message, retry: web.render_error(
            status, code, message, retry_after=retry, max_mb=max_mb, base_mb=base_mb
        ),
    )
    # Outside the shell, so that the shell reads error bodies uncompressed.
    app.add_middleware(PageCompression)
    # /docs, its assets and /openapi.json: security headers and gzip (api/openapi.py).
    app.add_middleware(DocsShell)

    @app.exception_handler(errors.ServiceError)
    async def _service_error(_r: Request, exc: errors.ServiceError) -> JSONResponse:
        headers = dict(exc.headers)
        if exc.code == errors.StorageIntegrity.code:
            metrics.storage_error("integrity")
        if exc.status == 503:
            # Every 503 says when to come back (RFC 9110 §10.2.3), whichever layer raised it.
            headers.setdefault("Retry-After", str(settings.retry_after_seconds))
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A field's path without its location ("body", "query"); the body itself ("body"),
        # not an empty name, when it is missing or not an object.
        fields = [
            ".".join(str(p) for p in e.get("loc", ())[1:]) or str(e.get("loc", ("body",))[0])
            for e in exc.errors()
        ]
        for e in exc.errors():
            if e.get("type") == "appearance_incomplete":
                # A profile's kind without what it draws (profile_rules.AppearanceSettings).
                ctx = e.get("ctx") or {}
                incomplete = errors.appearance_incomplete(
                    str(ctx.get("kind")), str(ctx.get("missing")), fields=fields
                )
                return error_response(
                    422, incomplete.code, incomplete.message, details=incomplete.details
                )
        if "appearance.copy_kind" in fields:
            wrong = errors.InvalidCopyKind(details={"fields": fields})
            return error_response(422, wrong.code, wrong.message, details=wrong.details)
        if "appearance.kind" in fields:
            # A profile's appearance kind that does not exist has its own code (issue 10).
            unknown = errors.UnknownAppearanceKind(details={"fields": fields})
            return error_response(422, unknown.code, unknown.message, details=unknown.details)
        if request.url.path.startswith(OPERATOR_API_KEYS):
            # The operator API's documented code for a bad name, role, expiry or overlap
            # (README; newuser finding 2), whichever layer finds it.
            return error_response(
                422,
                errors.InvalidApiKeyRequest.code,
                errors.InvalidApiKeyRequest.message,
                details={"fields": fields},
            )
        return error_response(
            422,
            "INVALID_REQUEST",
            "Yêu cầu thiếu trường bắt buộc hoặc có trường không hợp lệ.",
            details={"fields": fields},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, errors.ServiceError):
            # FastAPI turns any error while it parses a form into 400 "error parsing the body";
            # ours keeps its own answer: a chunked body over the limit is 413 FILE_TOO_LARGE,
            # as a declared one is (red team F9).
            return await _service_error(request, exc.__cause__)
        code, message = HTTP_CODES.get(exc.status_code, ("HTTP_ERROR", "Yêu cầu không hợp lệ."))
        return error_response(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if connection_lost(exc):
            # PostgreSQL restarting or failing over: the client may retry (issue 13).
            log.warning("database unavailable: %s", type(exc).__name__)
            return await _service_error(request, errors.DatabaseUnavailable())
        log.exception("unexpected error: %s", type(exc).__name__)
        return error_response(500, "INTERNAL_ERROR", "Lỗi nội bộ của dịch vụ.")

    # Route order is matching order: the same as when the routes were declared here.
    for router in (
        health.router,
        signatures.router,
        evidence.router,
        admin.router,
        documents.router,
        extensions.router,
        verifications.router,
        registry.router,
        attachments.router,
        operator.router,
        observe.router,
        web.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    # /docs offline, the bearer scheme and every operation's error codes (api/openapi.py).
    mount_docs(app)

    return app
