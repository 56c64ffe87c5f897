"""CORS for the public verification API only (issue 11 item 5).

A portal that embeds the check calls ``POST /v1/verifications`` (and the public registry record
``GET /v1/registry/{public_id}``) from its own pages: those paths answer the configured origins
(``SIGNING_SERVICE_CORS_ORIGINS``, exact matches) with Starlette's ``CORSMiddleware``. Every
other path, the agencies' and the operator's APIs above all, never carries CORS headers, and
no cross-origin request may send credentials or an ``Authorization`` header (only the
CORS-safelisted request headers are allowed): a portal's page can never act with an API key.
A request from an origin not configured never reaches ``CORSMiddleware``: it gets no CORS
header at all (Starlette would still add ``Access-Control-Expose-Headers``), and its preflight
is answered as any ``OPTIONS`` is (405), so the browser keeps the answer from that page. The
answers of these paths vary by ``Origin`` (``Vary: Origin``) whoever asks, so that a cache never
serves one origin's answer to another.
"""

from __future__ import annotations

import re

from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CORS_PATHS = (
    re.compile(r"^/v1/verifications$"),
    re.compile(r"^/v1/registry/[^/]+$"),
)
CORS_METHODS = ("GET", "POST")
# A portal may read the PDF report's name and when to retry after 429/503.
CORS_EXPOSED = ("Content-Disposition", "Retry-After")


class PublicCors:
    """``CORSMiddleware`` for the paths of :data:`CORS_PATHS`, nothing for the others; a
    pass-through when ``origins`` is empty."""

    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        self.app = app
        self.origins = frozenset(o.encode("latin-1") for o in origins)
        self.cors: ASGIApp | None = (
            CORSMiddleware(
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
