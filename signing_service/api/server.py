"""The HTTP server's own limits: what uvicorn does not bound by itself.

uvicorn's httptools protocol (the one ``uvicorn[standard]`` runs) reads request headers
without a size limit (a 50 MB header was accepted) and starts no timer before a request's
headers are complete (3,000 half-open connections were held for as long as their clients
liked; issue 9). :class:`LimitedHttpProtocol` adds, per connection:

- a header read timeout (``header_timeout``): from the connection's opening, or from the first
  byte after the previous answer, the request line and headers must be complete within it;
  otherwise 408 and the connection is closed (nginx ``client_header_timeout``);
- a header size limit (``max_header_bytes``, request line included): beyond it 431 and the
  connection is closed, before the parser buffers more;
- a connection limit (``max_connections`` per server process): a connection beyond it is
  answered 503 with ``Retry-After`` and closed at once, so file descriptors stay available.

The body read timeout and the anonymous lane are ASGI middleware (:mod:`.edge`); keep-alive
idle time is uvicorn's ``timeout_keep_alive``. :func:`uvicorn_options` gathers everything
``serve`` passes to ``uvicorn.run``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import resource
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from signing_service import errors
from signing_service.settings import Settings

log = logging.getLogger(__name__)

# Descriptors kept for everything but client connections: database pool, spool and object
# files, the verification workers' pipes, the dev PKI server.
RESERVED_DESCRIPTORS = 256


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection limits of :class:`LimitedHttpProtocol` (picklable: ``serve --workers``
    hands them to each worker process)."""

    max_header_bytes: int
    header_timeout: float
    max_connections: int
    retry_after: int


def _raw_error(
    error: errors.ServiceError, extra: dict[str, str] | None = None, *, page: bool = False
) -> bytes:
    """A complete HTTP/1.1 answer in the one error shape, closing the connection; ``page``:
    the citizen's page asked (its path), so the friendly Vietnamese HTML error page instead of
    JSON (a hand-made 70,000-character QR link met this limit; red team F6)."""
    body = json.dumps(error.to_dict(), ensure_ascii=False).encode("utf-8")
    content_type = "application/json"
    if page:
        from signing_service.web.middleware import PAGE_CACHE, SECURITY_HEADERS
        from signing_service.web.routes import render_error

        body = render_error(error.status, error.code, error.message)
        content_type = "text/html; charset=utf-8"
        extra = {
            **(extra or {}),
            **{k.decode(): v.decode() for k, v in SECURITY_HEADERS},
            "cache-control": PAGE_CACHE.decode(),
        }
    reason = {
        400: "Bad Request",
        408: "Request Timeout",
        431: "Request Header Fields Too Large",
    }.get(error.status, "Service Unavailable")
    lines = [
        f"HTTP/1.1 {error.status} {reason}",
        f"content-type: {content_type}",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in (extra or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout, a header size limit and a
    connection limit (module docstring). Built by uvicorn with ``limits`` bound by
    :func:`uvicorn_options` (``functools.partial``)."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._refused = False

    # -- connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            from signing_service import metrics

            metrics.rate_limit_rejection("TOO_MANY_CONNECTIONS")
            self._refuse(
                errors.TooManyConnections(),
                {"retry-after": str(self.limits.retry_after)},
            )
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            # The first byte of a new request on a kept-alive connection.
            self._arm()
        if self._header_timer is not None:
            room = self.limits.max_header_bytes - self._header_bytes
            if len(data) > room:
                # Feed what fits: if the headers end in it, the rest is the body.
                head, rest = data[: max(room, 0)], data[max(room, 0) :]
                self._header_bytes += len(head)
                if head:
                    super().data_received(head)
                if self._header_timer is not None and not self.transport.is_closing():
                    self._refuse(errors.RequestHeadersTooLarge())
                    return
                if rest and not self.transport.is_closing():
                    super().data_received(rest)
                return
            self._header_bytes += len(data)
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes the HTTP parser refuses (``msg``: its English text, "Invalid
        HTTP request received.", logged by uvicorn) in the service's one error shape: 400
        ``MALFORMED_HTTP_REQUEST`` with a Vietnamese message (the page's HTML error page on its
        paths), the connection closed. It never reaches the application, so the line it
        leaves in the service's log is this one."""
        log.warning(
            "malformed HTTP request from %s: 400 MALFORMED_HTTP_REQUEST",
            (self.client or ("?",))[0],
        )
        self._refuse(errors.MalformedHttpRequest())

    # -- parser callbacks -----------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    # -- helpers --------------------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self._refuse(errors.RequestTimeout())

    def _page_path(self) -> bool:
        """Whether the request line read so far names one of the page's paths (uvicorn
        gathers the URL in ``self.url`` as the parser reads it)."""
        from signing_service.web.middleware import is_page_path

        url = getattr(self, "url", b"") or b""
        path = url.split(b"?", 1)[0].decode("latin-1")
        return bool(path) and is_page_path(path)

    def _refuse(self, error: errors.ServiceError, extra: dict[str, str] | None = None) -> None:
        self._refused = True
        self._disarm()
        self._unset_keepalive_if_required()
        try:
            self.transport.write(_raw_error(error, extra, page=self._page_path()))
        finally:
            self.transport.close()


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (connections are file
    descriptors; many systems default the soft limit to 1024). Returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit from %d", soft)
    return soft


def connection_limits(settings: Settings, open_files: int | None = None) -> ConnectionLimits:
    """The limits for ``settings``: ``max_connections`` kept below the open-file limit."""
    if open_files is None:
        open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    ceiling = max(16, open_files - RESERVED_DESCRIPTORS)
    if settings.max_connections > ceiling:
        log.warning(
            "SIGNING_SERVICE_MAX_CONNECTIONS=%d exceeds the open-file limit; using %d",
            settings.max_connections,
            ceiling,
        )
    return ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.header_timeout_seconds,
        max_connections=min(settings.max_connections, ceiling),
        retry_after=settings.retry_after_seconds,
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` that apply the edge's limits.

    ``proxy_headers`` is off: uvicorn would otherwise believe ``X-Forwarded-For`` from
    127.0.0.1 by default (``FORWARDED_ALLOW_IPS``); the public lane reads the header itself,
    and only from ``SIGNING_SERVICE_TRUSTED_PROXIES``. No WebSocket is served."""
    limits = connection_limits(settings, raise_open_file_limit())
    return {
        "http": functools.partial(LimitedHttpProtocol, limits=limits),
        "ws": "none",
        "proxy_headers": False,
        "server_header": False,
        "timeout_keep_alive": settings.keep_alive_seconds,
    }


METRICS_SUBDIR = "metrics"


def metrics_directory(settings: Settings, host: str, port: int) -> Path:
    """``<data dir>/metrics/<host>-<port>``: the prometheus multiprocess directory of the
    ``serve`` listening on ``host:port``. One per serving instance, because two instances on
    one data directory (a replica, a second ``serve`` started by mistake) must neither empty
    each other's files nor sum each other's requests into their own scrape (issue 13, new
    user 12 finding 1). ``:`` of an IPv6 address becomes ``_`` (a portable file name)."""
    name = f"{host.strip('[]').replace(':', '_').replace('/', '_')}-{port}"
    return settings.resolved_data_dir / METRICS_SUBDIR / name


def prepare_metrics_directory(settings: Settings, host: str, port: int) -> Path:
    """Make :func:`metrics_directory` (``<data dir>/metrics/<host>-<port>``) the prometheus
    multiprocess directory of this server and of every process it starts (``--workers N``,
    the verification worker processes): emptied (files of a previous run on the same address
    would be summed into this one's counters), private (0700), and named in
    ``PROMETHEUS_MULTIPROC_DIR``. Call it only once ``host:port`` is known to be free (the
    caller's bind check): only the instance that owns the address may empty its directory;
    other instances' directories are never touched. Must run before
    :mod:`signing_service.metrics` is first imported: prometheus-client chooses where values
    live at import. Uses the standard library only for that reason. Returns the directory;
    raises ``OSError`` when it cannot be created."""
    directory = metrics_directory(settings, host, port)
    if directory.is_dir() and not directory.is_symlink():
        shutil.rmtree(directory)
    elif directory.exists() or directory.is_symlink():
        directory.unlink()
    directory.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    directory.mkdir(mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


def settle_heap() -> int:
    """Import what a signing request needs, then move every object alive so far out of reach
    of Python's cyclic garbage collector (``gc.freeze``). Returns the number of objects frozen.

    Why: a full collection walks every tracked object, and in a server most of them are the
    modules' (functions, classes, constants), alive until the process exits anyway. Measured on
    ``serve`` (1 worker, 900 raw B-B signatures, ``gc.callbacks``): the full collection took
    134 ms, a pause of every request it lands in; with the heap frozen after start-up, 22 ms,
    and the collector's time per request went from 0.35 ms to 0.23 ms. What requests allocate
    is collected as before. For the server's own processes only (``serve``, each worker of
    ``serve --workers``), never in tests or libraries, where frozen objects would outlive
    whatever made them. https://docs.python.org/3/library/gc.html#gc.freeze"""
    import gc

    import signing_service.services.signing  # noqa: F401 - the signing path, loaded once

    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
