"""What every router shares: the application's :class:`Services`, the authenticated caller,
the worker-thread runner, reading an upload, the error body and small output converters.

Everything here reaches the running application through ``request.app.state`` (set by
:func:`signing_service.api.app.create_app`), never through a module global, so two apps in one
process (the tests build one per test) never share services or a worker limiter."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Header, Request, UploadFile, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from signing_service import errors, logs
from signing_service.api import schemas
from signing_service.services.auth import OPERATOR_ROLE, authenticate
from signing_service.services.container import Services
from signing_service.services.documents import DocumentView
from signing_service.settings import Settings
from signing_service.store.models import ApiClient

T = TypeVar("T")


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """The one error body: ``{"code", "message", **extra}`` with HTTP ``status``."""
    return JSONResponse({"code": code, "message": message, **extra}, status_code=status)


async def get_services(request: Request) -> Services:
    """The application's :class:`Services` (``app.state.services``).

    This and the other attribute lookups below are ``async def``: FastAPI runs a plain
    ``def`` dependency in a worker thread, a thread hop (~0.1 ms of CPU) for nothing."""
    services: Services = request.app.state.services
    return services


AppServices = Annotated[Services, Depends(get_services)]


class WorkerThreads:
    """Runs blocking calls (database, storage, signing) in worker threads, at most
    ``settings.worker_threads`` at a time for the whole application: one instance per app,
    kept on ``app.state.worker_threads``."""

    def __init__(self, threads: int) -> None:
        self.limiter = anyio.CapacityLimiter(threads)

    async def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``await in_worker(fn, *args, **kwargs)``: ``fn(*args, **kwargs)`` in a worker
        thread, waiting for a free one; its result, or its exception re-raised."""
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self.limiter)


async def get_worker_threads(request: Request) -> WorkerThreads:
    """The application's :class:`WorkerThreads` (``app.state.worker_threads``)."""
    runner: WorkerThreads = request.app.state.worker_threads
    return runner


InWorker = Annotated[WorkerThreads, Depends(get_worker_threads)]


async def get_verification_threads(request: Request) -> WorkerThreads:
    """The public lane's own threads (``app.state.verification_threads``): anonymous
    verifications wait there for the verification worker processes (or, without them, run
    there), never in the :class:`WorkerThreads` agencies sign with."""
    runner: WorkerThreads = request.app.state.verification_threads
    return runner


VerificationThreads = Annotated[WorkerThreads, Depends(get_verification_threads)]


def _authenticated(request: Request, authorization: str | None) -> ApiClient:
    services: Services = request.app.state.services
    with services.db.transaction() as session:
        found = authenticate(session, authorization)
        _ = found.agency  # load while the session is open
    # The request's log lines (the access line included) name the agency from here on.
    logs.set_agency(found.agency.code if found.agency is not None else None)
    return found


def current_client(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> ApiClient:
    """The agency's API client named by the ``Authorization`` header, its agency loaded.

    Raises :class:`errors.Unauthenticated` (401) when the key is missing, unknown, revoked or
    expired, and :class:`errors.OperatorKeyNotAgency` (403) for the platform operator's key:
    it belongs to no agency, so it never signs, reads documents or stores attachments."""
    found = _authenticated(request, authorization)
    if found.role == OPERATOR_ROLE or found.agency is None:
        raise errors.OperatorKeyNotAgency()
    return found


Client = Annotated[ApiClient, Depends(current_client)]


def current_operator(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> ApiClient:
    """The platform operator's API key named by the ``Authorization`` header.

    Raises :class:`errors.Unauthenticated` (401) as :func:`current_client` does, and
    :class:`errors.Forbidden` (403 ``FORBIDDEN``) for any agency key, admin included: an
    agency never reaches the operator API."""
    found = _authenticated(request, authorization)
    if found.role != OPERATOR_ROLE or found.agency_id is not None:
        raise errors.Forbidden("Khóa API của cơ quan không dùng được các chức năng vận hành.")
    return found


Operator = Annotated[ApiClient, Depends(current_operator)]


def current_admin(caller: Client) -> ApiClient:
    """The caller, if its key has the ``admin`` role; else :class:`errors.Forbidden` (403)."""
    if caller.role != "admin":
        raise errors.Forbidden("Khóa API này không có quyền quản trị cấu hình ký số.")
    return caller


Admin = Annotated[ApiClient, Depends(current_admin)]


def actor_of(caller: ApiClient) -> str:
    """How the audit log names an API client: ``api-client:<key id>``, or
    ``operator:<key id>`` for the platform operator's key."""
    if caller.role == OPERATOR_ROLE:
        return f"operator:{caller.key_id}"
    return f"api-client:{caller.key_id}"


async def read_upload(upload: UploadFile, settings: Settings) -> bytes:
    """The uploaded file's bytes, at most ``settings.max_document_bytes + 1`` of them (one more
    than any use case allows, so it can tell an oversized file and refuse it with 413)."""
    data = await upload.read(settings.max_document_bytes + 1)
    return data


def document_out(doc: DocumentView) -> schemas.DocumentOut:
    """A stored document as the API shows it, with its download path."""
    return schemas.DocumentOut(
        **doc.__dict__,
        download_url=f"/v1/documents/{doc.id}/content",
    )


def repeated_json_keys(body: bytes) -> list[str]:
    """The keys some object of the JSON ``body`` holds more than once, in order of first
    repetition; ``[]`` when none, or when ``body`` is not JSON (FastAPI's own parse answers
    that)."""
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and key not in repeated:
                repeated.append(key)
            seen.add(key)
        return dict(items)

    try:
        json.loads(body, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return []
    return repeated


def _json_media_type(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class UniqueKeysRoute(APIRoute):
    """A route whose JSON body may not repeat a key: 422 ``INVALID_REQUEST`` naming it in
    ``details.fields``, as for a form field sent twice (red team 17b, R17B-8: ``{"name":
    "dup", "name": "dup2"}`` made profile "dup2", while a log or an upstream validator reading
    the first value saw another). Python's ``json`` keeps the last value silently; the body
    is read once more here with an ``object_pairs_hook`` before FastAPI parses it (the same
    bytes: Starlette caches the body), so the check comes where a JSON syntax error does,
    before the caller is authenticated. Routes without a JSON body (forms, none) are left
    as they are."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        body_params = self.dependant.body_params
        if self.body_field is None or any(
            isinstance(p.field_info, params.Form) for p in body_params
        ):
            return handler

        async def unique_keys(request: Request) -> Response:
            if _json_media_type(request.headers.get("content-type")):
                repeated = repeated_json_keys(await request.body())
                if repeated:
                    raise RequestValidationError(
                        [
                            {
                                "loc": ("body", key),
                                "msg": "trường bị gửi nhiều lần",
                                "type": "value_error",
                            }
                            for key in repeated
                        ]
                    )
            return await handler(request)

        return unique_keys
