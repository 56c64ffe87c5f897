"""What every request meets before a route runs: ASGI middleware for the service's edge.

- :class:`RequestGuard`: a path with a control character names nothing (404), and a header
  value with NUL, CR or LF is refused (400), before any route hands them to a database that
  refuses them (PostgreSQL and NUL: a 500, issue 9); so is a request with more than one
  ``Authorization`` header (400: who is calling must not depend on which one a layer reads).
- :class:`BodyTimeout`: the request body must keep arriving (Apache ``mod_reqtimeout``'s
  model, ``body=N,MinRate=R``): a client may wait ``timeout`` seconds in all for body bytes,
  plus one second for every ``min_rate`` bytes it has sent. A slow-loris body (one byte every
  few seconds) is answered 408 and the connection closed; a large upload at a decent rate is
  never cut off. Only the time spent *waiting for the client* counts.
- :class:`PublicLane`: the anonymous lane (issue 9, "anonymous load starves agencies"): at
  most ``max_concurrent`` requests without credentials at a time (503 with ``Retry-After``
  beyond), and per-client token buckets on the public verification endpoint (429
  ``RATE_LIMITED`` with ``Retry-After``). The client is the TCP peer, or, only when the peer is
  a proxy the operator named in ``SIGNING_SERVICE_TRUSTED_PROXIES``, the address that proxy
  put in ``X-Forwarded-For`` (the header is anyone's to write otherwise).

The buckets live in the process: with several server processes (``--workers N``) each has its
own, so a client gets up to N times the rate (documented in the README).

The header-side limits (header size and header read time, connections) are the HTTP
protocol's: :mod:`signing_service.api.server`.
"""

from __future__ import annotations

import ipaddress
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signing_service import errors, metrics

# C0 controls and DEL, after percent-decoding.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


async def send_error(
    send: Send,
    error: errors.ServiceError,
    *,
    close: bool = False,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer with ``error`` in the one error shape (``{"code", "message", ...}``);
    ``close``: ask the server to close the connection after it (``Connection: close``), for
    answers given before the request body was read."""
    import json

    body = json.dumps(error.to_dict(), ensure_ascii=False).encode("utf-8")
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    for name, value in {**error.headers, **(headers or {})}.items():
        raw.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# RFC 9110 §5.5: a field value with CR, LF or NUL is invalid and must be rejected.
_BAD_FIELD_VALUE = re.compile(rb"[\x00\r\n]")
# Authorization is a singleton field (RFC 9110 §11.6.2 defines one credentials value).
_REPEATED_AUTHORIZATION_MESSAGE = (
    "Tiêu đề Authorization được gửi nhiều lần; mỗi yêu cầu chỉ được mang một khóa API."
)


class RequestGuard:
    """404 ``NOT_FOUND`` for a path holding a control character (NUL, newline, ...): such a
    path names nothing, and ids reach the database as they are. 400 ``INVALID_REQUEST`` for a
    header value holding NUL, CR or LF (RFC 9110 §5.5; an API key with a NUL reached
    PostgreSQL), and for a request with more than one ``Authorization`` header (red team 17b,
    R17B-7: the first was used and the second ignored, while a proxy or WAF in front may judge
    the last: two parties disagreeing about who is calling; ``details.fields`` names it, as for
    a repeated form field). A real HTTP parser already refuses most of these; this holds
    whatever the server in front."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if _CONTROL.search(scope.get("path", "")):
                await send_error(send, errors.NotFound(), close=True)
                return
            headers = scope.get("headers") or []
            if any(_BAD_FIELD_VALUE.search(value) for _, value in headers):
                await send_error(
                    send,
                    errors.MalformedRequest(
                        "Tiêu đề (header) của yêu cầu chứa ký tự không hợp lệ."
                    ),
                    close=True,
                )
                return
            if sum(1 for name, _ in headers if name.lower() == b"authorization") > 1:
                await send_error(
                    send,
                    errors.MalformedRequest(
                        _REPEATED_AUTHORIZATION_MESSAGE, details={"fields": ["Authorization"]}
                    ),
                    close=True,
                )
                return
        await self.app(scope, receive, send)


class BodyTimeout:
    """Bound the time a client may take to send its request body (see the module docstring):
    ``timeout`` seconds of waiting, plus one second per ``min_rate`` bytes received. On expiry
    the client gets 408 ``REQUEST_TIMEOUT`` with ``Connection: close`` (if no answer has
    started), and the application sees the client as gone (``http.disconnect``), so it cleans
    up exactly as for a client that hung up (attachments: ``UPLOAD_INCOMPLETE``, audited)."""

    def __init__(self, app: ASGIApp, *, timeout: float, min_rate: int) -> None:
        self.app = app
        self.timeout = timeout
        self.min_rate = max(1, min_rate)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.timeout <= 0:
            await self.app(scope, receive, send)
            return
        waited = 0.0
        received = 0
        body_done = False
        timed_out = False
        started = False

        async def timed_receive() -> Message:
            nonlocal waited, received, body_done, timed_out
            if timed_out:
                return {"type": "http.disconnect"}
            if body_done:
                # Past the body, receive() only waits for the client to go away (a streamed
                # download listens for it): no deadline there.
                return await receive()
            allowed = self.timeout + received / self.min_rate - waited
            began = time.monotonic()
            try:
                with anyio.fail_after(max(allowed, 0.001)):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                if not started:
                    await send_error(send, errors.RequestTimeout(), close=True)
                return {"type": "http.disconnect"}
            finally:
                waited += time.monotonic() - began
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return  # our 408 has answered; whatever the application says is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, timed_receive, guarded_send)


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(value.strip(), strict=False)


def parse_trusted_proxies(values: Sequence[str]) -> tuple[ipaddress._BaseNetwork, ...]:
    """The operator's proxies as networks (``10.0.0.5``, ``10.0.0.0/24``, ``fd00::/8``).
    Raises ``ValueError`` naming the first malformed entry."""
    networks = []
    for value in values:
        try:
            networks.append(_network(value))
        except ValueError:
            raise ValueError(f"không phải địa chỉ IP hoặc dải mạng: {value!r}") from None
    return tuple(networks)


def client_address(
    scope: Scope, trusted: Sequence[ipaddress._BaseNetwork]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client a request comes from: the TCP peer; or, when the peer is one of the
    ``trusted`` proxies, the right-most address of ``X-Forwarded-For`` that is not itself a
    trusted proxy (each proxy appends the address it received the request from, so only the
    entries added by trusted proxies can be believed; RFC 7239 §5.2 / the common practice).
    ``None`` when the peer is unknown (an in-process test client)."""
    peer = scope.get("client")
    try:
        address = ipaddress.ip_address(peer[0]) if peer else None
    except ValueError:
        address = None
    if address is None or not any(address in net for net in trusted):
        return address
    forwarded: list[str] = []
    for name, value in scope.get("headers") or []:
        if name == b"x-forwarded-for":
            forwarded.extend(part.strip() for part in value.decode("latin-1").split(","))
    for entry in reversed(forwarded):
        try:
            hop = ipaddress.ip_address(entry)
        except ValueError:
            return address  # a malformed hop: stop trusting the chain there
        if not any(hop in net for net in trusted):
            return hop
        address = hop
    return address


def bucket_key(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> str:
    """One bucket per IPv4 address and per IPv6 /64 (one subscriber's prefix: an IPv6 client
    has billions of addresses to rotate through)."""
    if address is None:
        return "unknown"
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """Per-client token buckets: ``burst`` requests at once, refilled at ``rate_per_minute``.
    At most ``max_clients`` buckets are kept (least recently used dropped first: a dropped
    client starts again with a full bucket), so a flood of addresses cannot grow memory.
    Thread-safe; ``clock`` is ``time.monotonic``."""

    def __init__(
        self,
        rate_per_minute: float,
        burst: int,
        *,
        max_clients: int = 65_536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = max(1, burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when granted, else the seconds until one is."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.pop(key, None) or _Bucket(float(self.burst), now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate if self.rate > 0 else math.inf


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return bytes(value)
    return None


# Cheap probes an orchestrator calls without credentials: never refused by the lane.
PROBES = frozenset({"/healthz", "/readyz"})


class PublicLane:
    """The anonymous lane (see the module docstring).

    ``rate_limited(scope)`` says which requests spend a token (the public verification
    endpoint); a request is anonymous when it carries no ``Authorization`` header or goes to
    a rate-limited endpoint; at most ``max_concurrent`` anonymous requests run at a time.
    ``on_refused(code)`` is told of every refusal (the verification counters)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        rate_limited: Callable[[Scope], bool],
        buckets: TokenBuckets | None,
        max_concurrent: int,
        trusted_proxies: Sequence[ipaddress._BaseNetwork],
        max_per_client: int = 0,
        retry_after: int,
        on_refused: Callable[[str], None] = lambda _code: None,
    ) -> None:
        self.app = app
        self.rate_limited = rate_limited
        self.buckets = buckets
        self.max_concurrent = max_concurrent
        self.trusted = tuple(trusted_proxies)
        self.retry_after = retry_after
        self.on_refused = on_refused
        self.in_flight = 0
        # Anonymous requests in flight per client (IPv4 address, IPv6 /64): slow uploads from
        # two addresses held all the lane's places (red team, issue 9).
        self.max_per_client = max_per_client
        self.per_client: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in PROBES:
            await self.app(scope, receive, send)
            return
        limited = self.rate_limited(scope)
        anonymous = limited or _header(scope, b"authorization") is None
        if not anonymous:
            await self.app(scope, receive, send)
            return
        # Busy first: a request refused for want of room does not cost the client a token.
        if self.max_concurrent > 0 and self.in_flight >= self.max_concurrent:
            metrics.rate_limit_rejection("ANONYMOUS_BUSY")
            if limited:
                self.on_refused("ANONYMOUS_BUSY")
            await send_error(
                send,
                errors.AnonymousBusy(),
                close=True,
                headers={"Retry-After": str(self.retry_after)},
            )
            return
        client = bucket_key(client_address(scope, self.trusted))
        if self.max_per_client > 0 and self.per_client.get(client, 0) >= self.max_per_client:
            metrics.rate_limit_rejection("RATE_LIMITED")
            if limited:
                self.on_refused("RATE_LIMITED")
            await send_error(
                send,
                errors.RateLimited(),
                close=True,
                headers={"Retry-After": str(self.retry_after)},
            )
            return
        if limited and self.buckets is not None:
            wait = self.buckets.take(client)
            if wait > 0:
                metrics.rate_limit_rejection("RATE_LIMITED")
                self.on_refused("RATE_LIMITED")
                seconds = str(max(1, math.ceil(min(wait, 86_400))))
                await send_error(
                    send, errors.RateLimited(), close=True, headers={"Retry-After": seconds}
                )
                return
        # One event loop per process: the counter needs no lock.
        self.in_flight += 1
        self.per_client[client] = self.per_client.get(client, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            left = self.per_client[client] - 1
            if left:
                self.per_client[client] = left
            else:
                del self.per_client[client]
