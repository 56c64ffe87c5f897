"""CORS for the public verification API only (issue 11 item 5).

A portal that embeds the check calls ``POST /v1/verifications`` (and the public registry record
``GET /v1/registry/{public_id}``) from its own pages: those paths answer the configured origins
(``SIGNING_SERVICE_CORS_ORIGINS``, exact matches) with Starlette's ``CORSMiddleware``. Every
other path, the agencies' and the operator's APIs above all, never carries CORS headers, and
no cross-origin request may send credentials or an ``Authorization`` header (only the
CORS-safelisted request headers are allowed): a portal's page can never act with an API key.
A request from an origin not configured never reaches ``CORSMiddleware``: it gets no CORS
header at all (Starlette would still add ``Access-Control-Expose-Headers``), and its preflight
is answered as any ``OPTIONS`` is (405), so the browser keeps the answer from that page. A
configured origin's preflight asking for another method or header (``Authorization`` above all)
is refused 400 ``CORS_NOT_ALLOWED`` in the service's error shape. The
answers of these paths vary by ``Origin`` (``Vary: Origin``) whoever asks, so that a cache never
serves one origin's answer to another.
"""

from __future__ import annotations

import json
import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signing_service import errors

CORS_PATHS = (
    re.compile(r"^/v1/verifications$"),
    re.compile(r"^/v1/registry/[^/]+$"),
)
CORS_METHODS = ("GET", "POST")
# A portal may read the PDF report's name and when to retry after 429/503.
CORS_EXPOSED = ("Content-Disposition", "Retry-After")


class _ServiceCors(CORSMiddleware):
    """Starlette's ``CORSMiddleware`` whose refused preflight answers in the service's one
    error shape (newuser 18, red team F7): 400 ``{"code": "CORS_NOT_ALLOWED", "message": …,
    "details": {"refused": [...]}}`` (``method``, ``headers``, ``private-network``: what the
    browser asked for that is not allowed) instead of the text ``Disallowed CORS headers``.
    The answer keeps Starlette's CORS headers; an allowed preflight is unchanged (200)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        refused = []
        if request_headers.get("access-control-request-method") not in self.allow_methods:
            refused.append("method")
        asked = request_headers.get("access-control-request-headers")
        if asked is not None and any(
            h.strip().lower() not in self.allow_headers for h in asked.split(",")
        ):
            refused.append("headers")
        if request_headers.get("access-control-request-private-network") is not None:
            refused.append("private-network")
        error = errors.CorsNotAllowed(details={"refused": refused})
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-type", "content-length")
        }
        return Response(
            json.dumps(error.to_dict(), ensure_ascii=False).encode("utf-8"),
            status_code=error.status,
            headers=headers,
            media_type="application/json",
        )


class PublicCors:
    """``CORSMiddleware`` for the paths of :data:`CORS_PATHS`, nothing for the others; a
    pass-through when ``origins`` is empty."""

    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        self.app = app
        self.origins = frozenset(o.encode("latin-1") for o in origins)
        self.cors: ASGIApp | None = (
            _ServiceCors(
                app,
                allow_origins=list(origins),
                allow_methods=list(CORS_METHODS),
                allow_headers=[],
                allow_credentials=False,
                expose_headers=list(CORS_EXPOSED),
                max_age=600,
            )
            if origins
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.cors is None
            or scope["type"] != "http"
            or not any(p.match(scope.get("path", "")) for p in CORS_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        origin = dict(scope.get("headers") or []).get(b"origin")
        if origin is not None and origin in self.origins:
            await self.cors(scope, receive, send)
            return

        async def vary_on_origin(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, vary_on_origin)
