"""What every page answer carries, whichever layer produced it.

:class:`PageShell` wraps the application (outermost) and, for the page's paths only (``/``,
``/xac-minh…``, ``/static/…``):

- adds the security headers: a Content-Security-Policy that allows only the service's own
  files (no inline script: the one script is a static file, so an injected ``<script>`` in a
  certificate name or a registry reason cannot run even if escaping ever failed), forbids
  framing (clickjacking: ``frame-ancestors 'none'``) and form posts elsewhere;
  ``X-Content-Type-Options: nosniff``; ``Referrer-Policy: no-referrer`` (the QR link's
  public id must not leak to another site); and cache headers for the static assets (their
  URLs carry a content hash) and ``no-store`` for pages (a result names who signed what);
- turns the JSON error answers of the layers before the page routes (the edge's anonymous
  lane 429/503, the body limit 413, the body timeout 408, the router's 404/405) into the
  friendly Vietnamese error page with the same status and headers: a citizen never sees JSON,
  a stack trace or a blank page.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def security_headers(csp: str) -> list[tuple[bytes, bytes]]:
    """The headers every page the service draws carries (its pages, /docs): ``csp`` as the
    Content-Security-Policy, no MIME sniffing, no referrer, never framed, own browsing group."""
    return [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]


SECURITY_HEADERS = security_headers(CSP)
STATIC_CACHE = b"public, max-age=604800"
PAGE_CACHE = b"no-store"
MAX_ERROR_BODY = 64 * 1024


def is_page_path(path: str) -> bool:
    """Whether ``path`` belongs to the page (not the API)."""
    return (
        path == "/"
        or path == "/xac-minh"
        or path.startswith("/xac-minh/")
        or path.startswith("/static/")
    )


class PageShell:
    """ASGI middleware: security and cache headers on the page's answers, HTML error pages for
    JSON errors on the page's paths (see the module docstring). ``render_error(status, code,
    message, retry_after)`` gives the error page's UTF-8 bytes."""

    def __init__(
        self, app: ASGIApp, render_error: Callable[[int, str, str, str | None], bytes]
    ) -> None:
        self.app = app
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not is_page_path(path):
            await self.app(scope, receive, send)
            return
        static = path.startswith("/static/")
        start: Message | None = None
        chunks: list[bytes] = []

        async def shell_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"cache-control",) or message["status"] < 400
                ]
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                if b"cache-control" not in names:
                    ok = message["status"] < 400
                    headers.append(
                        (b"cache-control", STATIC_CACHE if static and ok else PAGE_CACHE)
                    )
                message = {**message, "headers": headers}
                content_type = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
                if message["status"] >= 400 and content_type.startswith(b"application/json"):
                    start = message  # held until the JSON body is complete
                    return
                await send(message)
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            await send_page(start, b"".join(chunks))

        async def send_page(held: Message, body: bytes) -> None:
            code, text = "HTTP_ERROR", "Không xử lý được yêu cầu."
            try:
                parsed = json.loads(body[:MAX_ERROR_BODY])
                code = str(parsed.get("code") or code)
                text = str(parsed.get("message") or text)
            except (ValueError, AttributeError):
                pass
            kept = [
                (k, v)
                for k, v in held["headers"]
                if k.lower() not in (b"content-type", b"content-length")
            ]
            retry = dict((k.lower(), v) for k, v in kept).get(b"retry-after")
            page = self.render_error(
                held["status"], code, text, retry.decode("latin-1") if retry else None
            )
            kept += [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(page)).encode()),
            ]
            await send({**held, "headers": kept})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, shell_send)


class PageCompression:
    """ASGI middleware: the page's answers gzip-compressed for browsers that accept it (each
    signature adds a few KB of HTML; compressed, a result with many signatures stays within
    the 60 KB first-load budget on a slow mobile connection). Only the page's paths: the API's
    answers are left as they are. The sealed PDF report is not compressed (already compressed,
    and its bytes are evidence). Compression and secrets (BREACH): a page holds none an
    attacker could probe for by reflecting input, the PDF link's token being new with each
    answer and no session or CSRF token existing."""

    def __init__(self, app: ASGIApp) -> None:
        from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware

        self.app = app
        self.gzip = GZipMiddleware(
            app,
            minimum_size=1024,
            compresslevel=6,
            exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/pdf"),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if is_page_path(path):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
