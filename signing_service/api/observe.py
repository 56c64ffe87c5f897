"""What the operator sees of every request: the request id, the access log line and the
request metrics (issue 13 items 1 and 2), and ``GET /metrics``.

:class:`RequestObserver` wraps the whole application, outside Starlette's error middleware,
so that it sees every answer, the 500s included, and the answers of the edge (rate limits,
body limits) that no route gave:

- the request id: the client's ``X-Request-ID`` when it is short and printable, else a new
  one (:func:`signing_service.logs.request_id_from`); bound to every log line of the request
  and returned in ``X-Request-ID`` on every answer (JSON, the citizen's page, errors);
- one access line (logger ``signing_service.access``): request id, agency code (once
  authenticated), method, route template, status, duration in ms; 499 when the client went
  away before any answer (nginx's convention);
- ``signing_service_http_requests_total`` and ``..._duration_seconds`` by route *template*
  (``/v1/documents/{document_id}``; ``unmatched`` when no route matches), never the raw
  path: label values stay bounded whatever paths clients send.

Answers the HTTP protocol layer gives before a request exists (408 header timeout, 431, 503
``TOO_MANY_CONNECTIONS``; api/server.py) have no request id and no access line.

``GET /metrics``: the Prometheus text exposition, for the platform operator's key only
(``Authorization: Bearer <operator key>``, as the operator API); an agency's key gets 403.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.routing import BaseRoute, Mount, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signing_service import logs, metrics
from signing_service.api import schemas
from signing_service.api.deps import Operator

access_log = logging.getLogger(logs.ACCESS_LOGGER)

UNMATCHED = "unmatched"
# The client closed the connection before any answer started (nginx's 499).
CLIENT_CLOSED = 499


def _template(route: BaseRoute) -> str:
    if isinstance(route, Mount):
        return route.path + "/{path}"
    return str(getattr(route, "path_format", None) or getattr(route, "path", UNMATCHED))


@dataclass(frozen=True)
class _Entry:
    pattern: re.Pattern[str]
    methods: frozenset[str] | None  # None: any method (a mount)
    template: str


def route_table(routes: Sequence[BaseRoute]) -> list[_Entry]:
    """Every route of the application, through included routers (FastAPI 0.165 keeps an
    included router as one entry of ``app.routes``; ``iter_route_contexts`` flattens them),
    as (path pattern, methods, template)."""
    from fastapi import routing

    iterate = getattr(routing, "iter_route_contexts", None)
    if iterate is None:
        flat = [(_template(r), r) for r in routes]
    else:
        flat = [
            (str(c.path_format or _template(c.original_route)), c.original_route)
            for c in iterate(routes)
        ]
    table = []
    for template, route in flat:
        if isinstance(route, Mount):
            pattern = compile_path(route.path + "/{path:path}")[0]
            table.append(_Entry(pattern, None, _template(route)))
            continue
        methods = getattr(route, "methods", None)
        table.append(
            _Entry(compile_path(template)[0], frozenset(methods) if methods else None, template)
        )
    return table


def route_template(scope: Scope, table: Sequence[_Entry]) -> str:
    """The template of the route that served ``scope`` (set by the router), or, for an
    answer the edge gave before routing (429, 413, 408), the route the request would have
    reached: path and method, else path only (405), else :data:`UNMATCHED`."""
    served = scope.get("route")
    if served is not None:
        return _template(served)
    path = str(scope.get("path", ""))
    method = str(scope.get("method", ""))
    partial = None
    for entry in table:
        if entry.pattern.match(path):
            if entry.methods is None or method in entry.methods:
                return entry.template
            partial = partial or entry.template
    return partial or UNMATCHED


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value)
    return None


class RequestObserver:
    """ASGI middleware: request id, access line and request metrics (module docstring).
    ``routes``: the application's routes, to name the route of an answer given before
    routing."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes
        self._table: list[_Entry] | None = None

    def _route(self, scope: Scope) -> str:
        if self._table is None and "route" not in scope:
            # Built on first need: every route is declared by then.
            self._table = route_table(self.routes)
        return route_template(scope, self._table or [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        context = logs.RequestContext(logs.request_id_from(_header(scope, b"x-request-id")))
        token = logs.begin(context)
        raw_id = context.request_id.encode("ascii")
        status: int | None = None

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [
                    (k, v) for k, v in message.get("headers") or [] if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", raw_id))
                message = {**message, "headers": headers}
            await send(message)

        metrics.request_started()
        try:
            await self.app(scope, receive, observed_send)
        except BaseException:
            if status is None:
                status = 500
            raise
        finally:
            metrics.request_finished()
            seconds = time.perf_counter() - started
            method = str(scope.get("method", ""))
            route = self._route(scope)
            final = status if status is not None else CLIENT_CLOSED
            metrics.observe_request(method, route, final, seconds)
            access_log.info(
                "request",
                extra={
                    "method": method,
                    "route": route,
                    "status": final,
                    "duration_ms": round(seconds * 1000, 1),
                },
            )
            logs.end(token)


router = APIRouter()


@router.get(
    "/metrics",
    tags=["vận hành"],
    summary="Số đo Prometheus của dịch vụ (chỉ khóa của đơn vị vận hành)",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Định dạng văn bản Prometheus"},
        401: {"model": schemas.ErrorBody},
        403: {"model": schemas.ErrorBody},
    },
)
async def metrics_endpoint(_caller: Operator) -> Any:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
