"""Prometheus metrics (issue 13 item 1): the metric families and the plain functions the rest
of the service calls to move them.

Callers never touch a metric object: they call :func:`observe_request`,
:func:`observe_signature`, :func:`observe_verification`, :func:`observe_tsa`,
:func:`tsa_failure`, :func:`observe_revocation_fetch`, :func:`storage_error`,
:func:`database_error`, :func:`rate_limit_rejection` or :func:`set_queue_probe`. Every label
takes its value from a bounded set (route *templates*, never raw paths; levels; key kinds;
agency codes the operator registered; fixed reason words), so the number of series stays
bounded whatever clients send.

Several processes (``serve --workers N``, the verification worker processes): prometheus
client's multiprocess mode. ``serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` to a directory the
service owns under its data directory, emptied at start
(:func:`signing_service.api.server.prepare_metrics_directory`), *before* this module is
imported anywhere (prometheus-client chooses its value storage at import). :func:`exposition`
then merges every process's files; without the variable (tests, one process) it reads this
process's registry.

This module imports nothing of the service (the signing and verification cores call it; the
import-linter contract keeps them free of web, ORM and storage code).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# No ``*_created`` series: a start timestamp per label set doubles the series for nothing
# Prometheus uses (it sees counter resets itself).
disable_created_metrics()

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "signing_service"

# Seconds. Requests: from a cached probe (~1 ms) to a 60-signature verification (tens of s).
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Upstream calls (TSA, OCSP, CRL): bounded by their timeouts (fetch_timeout_seconds, 10 s TSA).
_UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# -- requests ------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    f"{PREFIX}_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template.",
    ["method", "route"],
    buckets=_HTTP_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    f"{PREFIX}_http_requests_in_flight",
    "Requests being served now (all server processes).",
    multiprocess_mode="livesum",
)

# -- signing and verification ------------------------------------------------------------

SIGNATURES = Counter(
    f"{PREFIX}_signatures_total",
    "Signatures made and stored, by PAdES level, key kind and agency code.",
    ["level", "key_kind", "agency"],
)
VERIFICATIONS = Counter(
    f"{PREFIX}_verifications_total",
    "Verifications concluded, by ETSI EN 319 102-1 indication of the signatures (verdict) and "
    "the document's state (status.state: valid | invalid | indeterminate).",
    ["indication", "state"],
)

# -- upstream services ---------------------------------------------------------------------

TSA_DURATION = Histogram(
    f"{PREFIX}_tsa_request_duration_seconds",
    "RFC 3161 timestamp requests to the TSA, by outcome (ok | error).",
    ["outcome"],
    buckets=_UPSTREAM_BUCKETS,
)
TSA_FAILURES = Counter(
    f"{PREFIX}_tsa_failures_total",
    "Timestamps not obtained or refused, by reason (unreachable, malformed, refused, or the "
    "token check's reason: invalid, untrusted, key_purpose, weak_algorithm, imprint_mismatch, "
    "nonce_mismatch, time_skew, status_unknown).",
    ["reason"],
)
REVOCATION_DURATION = Histogram(
    f"{PREFIX}_revocation_fetch_duration_seconds",
    "OCSP and CRL fetches (cache misses only), by kind (ocsp | crl) and outcome (ok | error).",
    ["kind", "outcome"],
    buckets=_UPSTREAM_BUCKETS,
)
REVOCATION_FAILURES = Counter(
    f"{PREFIX}_revocation_fetch_failures_total",
    "OCSP and CRL fetches that failed (unreachable, timeout, malformed), by kind.",
    ["kind"],
)

# -- infrastructure ------------------------------------------------------------------------

STORAGE_ERRORS = Counter(
    f"{PREFIX}_storage_errors_total",
    "Object store failures: unavailable (the backend did not answer or refused) or integrity "
    "(content that does not match its recorded SHA-256).",
    ["kind"],
)
DATABASE_ERRORS = Counter(
    f"{PREFIX}_database_errors_total",
    "Errors raised by the database driver, by kind (disconnect, operational, integrity, other).",
    ["kind"],
)
RATE_LIMIT_REJECTIONS = Counter(
    f"{PREFIX}_rate_limit_rejections_total",
    "Requests refused by the edge's limits, by code (RATE_LIMITED, ANONYMOUS_BUSY, "
    "TOO_MANY_CONNECTIONS).",
    ["code"],
)

QUEUE_DEPTH = f"{PREFIX}_job_queue_depth"
QUEUE_AGE = f"{PREFIX}_job_queue_oldest_age_seconds"

QueueProbe = Callable[[], tuple[int, float | None]]


def _no_queue() -> tuple[int, float | None]:
    return 0, None


_queue_probe: QueueProbe = _no_queue
_probe_lock = threading.Lock()

TSA_REASONS = frozenset(
    {
        "unreachable",
        "malformed",
        "refused",
        "invalid",
        "untrusted",
        "key_purpose",
        "weak_algorithm",
        "imprint_mismatch",
        "nonce_mismatch",
        "time_skew",
        "status_unknown",
    }
)
LEVELS = frozenset({"B-B", "B-T", "B-LT", "B-LTA"})
KEY_KINDS = frozenset({"pkcs12", "pkcs11", "csc", "officer"})
INDICATIONS = frozenset({"TOTAL_PASSED", "TOTAL_FAILED", "INDETERMINATE", "NO_SIGNATURE"})
STATES = frozenset({"valid", "invalid", "indeterminate"})


def _bounded(value: str | None, allowed: frozenset[str]) -> str:
    """``value`` when it is one of ``allowed``, else ``other``: a label never takes a value
    from outside its set (bounded cardinality)."""
    return value if value in allowed else "other"


# -- what the service calls ----------------------------------------------------------------


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """One answered HTTP request. ``route``: the route *template* (``/v1/documents/{id}``),
    ``unmatched`` when no route matched; never the raw path. ``method`` is one of the HTTP
    methods (anything else counts as ``OTHER``); ``seconds``: wall time of the request."""
    method = method if method in _METHODS else "OTHER"
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request_started() -> None:
    """A request began (the in-flight gauge); pair with :func:`request_finished`."""
    HTTP_IN_FLIGHT.inc()


def request_finished() -> None:
    """A request ended, however it ended."""
    HTTP_IN_FLIGHT.dec()


def observe_signature(level: str, key_kind: str | None, agency: str) -> None:
    """One signature made and stored (committed). ``level``: B-B | B-T | B-LT | B-LTA;
    ``key_kind``: pkcs12 | pkcs11 | csc | officer (two-step); ``agency``: the agency's code
    (registered by the operator, so a bounded set)."""
    SIGNATURES.labels(_bounded(level, LEVELS), _bounded(key_kind, KEY_KINDS), agency).inc()


def observe_verification(indication: str | None, state: str | None) -> None:
    """One verification concluded: ``indication`` is the report's ``verdict`` (ETSI EN 319
    102-1 TOTAL_PASSED / TOTAL_FAILED / INDETERMINATE, or NO_SIGNATURE); ``state`` the
    document's ``status.state`` (valid / invalid / indeterminate)."""
    VERIFICATIONS.labels(_bounded(indication, INDICATIONS), _bounded(state, STATES)).inc()


def observe_tsa(seconds: float, ok: bool, reason: str | None = None) -> None:
    """One HTTP exchange with a TSA took ``seconds``; ``ok`` False: it failed, for ``reason``
    (``unreachable``, ``malformed``, ``refused``; default ``unreachable``)."""
    TSA_DURATION.labels("ok" if ok else "error").observe(seconds)
    if not ok:
        tsa_failure(reason or "unreachable")


def tsa_failure(reason: str) -> None:
    """A timestamp refused after it arrived (:class:`TimestampCheckFailure` reasons) or not
    obtained (``unreachable``, ``malformed``, ``refused``)."""
    TSA_FAILURES.labels(_bounded(reason, TSA_REASONS)).inc()


def observe_revocation_fetch(kind: str, seconds: float, ok: bool) -> None:
    """One OCSP (``kind="ocsp"``) or CRL (``"crl"``) fetch from its responder or
    distribution point took ``seconds``; ``ok`` False: it failed."""
    kind = kind if kind in ("ocsp", "crl") else "other"
    REVOCATION_DURATION.labels(kind, "ok" if ok else "error").observe(seconds)
    if not ok:
        REVOCATION_FAILURES.labels(kind).inc()


def storage_error(kind: str = "unavailable") -> None:
    """One object store failure: ``unavailable`` or ``integrity``."""
    STORAGE_ERRORS.labels(kind if kind in ("unavailable", "integrity") else "other").inc()


def database_error(kind: str) -> None:
    """One error from the database driver: ``disconnect``, ``operational``, ``integrity``
    or ``other``."""
    allowed = ("disconnect", "operational", "integrity")
    DATABASE_ERRORS.labels(kind if kind in allowed else "other").inc()


def rate_limit_rejection(code: str) -> None:
    """One request refused by the edge: ``RATE_LIMITED`` (429), ``ANONYMOUS_BUSY`` (503) or
    ``TOO_MANY_CONNECTIONS`` (503)."""
    allowed = ("RATE_LIMITED", "ANONYMOUS_BUSY", "TOO_MANY_CONNECTIONS")
    RATE_LIMIT_REJECTIONS.labels(code if code in allowed else "other").inc()


def _known_children() -> None:
    """Create every child of the failure counters with a label value known in advance, at 0
    (new user 12 finding 11): without it a family the README's alerts name
    (``tsa_failures_total``, ``storage_errors_total``, ``database_errors_total``,
    ``rate_limit_rejections_total``) is absent from a scrape until its first increment, and
    ``increase()``/``rate()`` never see that first error (the series starts at 1). In
    multiprocess mode each process writes these zeros to its own file; the sums stay 0."""
    for reason in sorted(TSA_REASONS):
        TSA_FAILURES.labels(reason)
    for kind in ("ocsp", "crl"):
        REVOCATION_FAILURES.labels(kind)
    for kind in ("unavailable", "integrity"):
        STORAGE_ERRORS.labels(kind)
    for kind in ("disconnect", "operational", "integrity", "other"):
        DATABASE_ERRORS.labels(kind)
    for code in ("RATE_LIMITED", "ANONYMOUS_BUSY", "TOO_MANY_CONNECTIONS"):
        RATE_LIMIT_REJECTIONS.labels(code)


_known_children()


def set_queue_probe(fn: QueueProbe | None) -> None:
    """Register the job queue's probe: ``fn() -> (depth, oldest_age_seconds | None)``, called
    at every scrape (in the scraping process: it should be one cheap query). ``None``: back
    to the default (0 jobs, no age). A probe that raises is logged and reported as no
    samples for that scrape, never a failed scrape."""
    global _queue_probe
    with _probe_lock:
        _queue_probe = fn or _no_queue


class QueueCollector(Collector):
    """``signing_service_job_queue_depth`` and ``..._oldest_age_seconds`` read from the
    registered probe at collection time (the queue lives in the database, not in a
    process, so these are never multiprocess values)."""

    def collect(self) -> Iterable[Any]:
        with _probe_lock:
            probe = _queue_probe
        try:
            depth, age = probe()
        except Exception as e:  # noqa: BLE001 - a scrape must not fail for the probe
            log.warning("job queue probe failed: %s", type(e).__name__)
            return []
        families = [GaugeMetricFamily(QUEUE_DEPTH, "Jobs waiting in the queue.", value=depth)]
        families.append(
            GaugeMetricFamily(
                QUEUE_AGE,
                "Age in seconds of the oldest waiting job (0 when none waits).",
                value=float(age) if age is not None else 0.0,
            )
        )
        return families


_QUEUE_COLLECTOR = QueueCollector()
REGISTRY.register(_QUEUE_COLLECTOR)


def multiprocess() -> bool:
    """Whether metrics are kept in the multiprocess directory (``serve``)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def exposition() -> tuple[bytes, str]:
    """The text exposition format of every metric (all processes in multiprocess mode) and
    its content type, for ``GET /metrics``."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        _forget_dead_processes()
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)
        registry.register(_QUEUE_COLLECTOR)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _forget_dead_processes() -> None:
    """Drop the live gauges of processes that no longer exist: a worker killed with SIGKILL
    (or replaced by uvicorn's supervisor) would otherwise keep its last in-flight count in
    the sum forever. Counters and histograms of dead processes stay: they are totals."""
    directory = os.environ.get(MULTIPROC_ENV, "")
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not name.startswith("gauge_live") or not name.endswith(".db"):
            continue
        try:
            pid = int(name.rsplit("_", 1)[1].removesuffix(".db"))
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            process_exited(pid)
        except OSError:
            pass  # alive, another user's: leave it


def serve_separately(host: str, port: int) -> Any:
    """Serve the exposition of :func:`exposition` on ``host:port`` (``GET`` any path), without
    authentication, from a daemon thread of this process (``serve``'s own, which answers no
    API request: the scrape works while workers are busy and needs no database). Returns the
    HTTP server (``shutdown()`` stops it). Raises ``OSError`` when the address cannot be
    bound."""
    from prometheus_client import start_http_server

    registry: Any
    if multiprocess():
        from prometheus_client import multiprocess as mp

        class _Fresh(Collector):
            # Dead processes' live gauges dropped before every collection, as /metrics does.
            def collect(self) -> Iterable[Any]:
                _forget_dead_processes()
                fresh = CollectorRegistry()
                mp.MultiProcessCollector(fresh)
                return list(fresh.collect())

        registry = CollectorRegistry()
        registry.register(_Fresh())
        registry.register(_QUEUE_COLLECTOR)
    else:
        registry = REGISTRY
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def process_exited(pid: int) -> None:
    """Forget a dead process's live gauges (multiprocess mode; its counters stay summed)."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)
