"""Verification of uploaded PDFs in worker processes of its own, with a time and memory budget.

The public verification endpoint takes files from anyone. Parsing limits bound what a hostile
file can make the parser do, but only a process boundary bounds *everything* (a pathological
difference analysis, a parser loop nobody foresaw, memory fragmentation): each verification runs
in a worker process with an address-space limit (``memory_limit_bytes``) and a wall-clock budget
(``timeout``). A worker that overruns is killed and replaced; the request gets
``VERIFICATION_TIME_LIMIT`` or ``VERIFICATION_RESOURCE_LIMIT`` (422) and nothing else is
affected. The pool has its own processes, apart from the threads that sign and store, so
anonymous load cannot take the CPU time agencies' signing needs, and a bounded number of
requests may wait for it (``max_pending``; beyond that ``VERIFICATION_BUSY``, 503 with
``Retry-After``).

Workers are forked from a ``forkserver`` that has already imported the verifier, so replacing
one costs tens of milliseconds, not the seconds of a fresh interpreter.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import queue
import resource
import signal
import threading
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from signing_service import errors

log = logging.getLogger(__name__)

_CONTEXT_LOCK = threading.Lock()
_CONTEXT: Any = None


def _context() -> Any:
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["signing_service.verification.validate"])
            _CONTEXT = ctx
        return _CONTEXT


@dataclass(frozen=True)
class TrustConfig:
    """What a worker needs to rebuild the service's trust store (picklable)."""

    manifest: Path
    extra: tuple[tuple[str, str], ...]  # (file, kind)
    dev_root: Path | None
    dev_intermediates: tuple[Path, ...]
    fetch_timeout: float
    ca_issuer_urls: tuple[str, ...] = ()

    def load(self) -> Any:
        from signing_service.settings import ExtraTrustAnchor
        from signing_service.trust import TrustStore, load_certs

        trust = TrustStore.load(
            self.manifest,
            extra=[ExtraTrustAnchor(file=Path(f), kind=k) for f, k in self.extra],  # type: ignore[arg-type]
            dev_root=self.dev_root,
            fetch_timeout=self.fetch_timeout,
            ca_issuer_urls=self.ca_issuer_urls,
        )
        for path in self.dev_intermediates:
            trust.intermediates.extend(load_certs(path))
        return trust


# Errors a worker reports by code, mapped back to the service's errors.
_ERRORS: dict[str, type[errors.ServiceError]] = {
    "NOT_A_PDF": errors.NotAPdf,
    "MALFORMED_PDF": errors.MalformedPdf,
    "ENCRYPTED_PDF": errors.EncryptedPdf,
    "RESOURCE_LIMIT": errors.VerificationResourceLimit,
}


def _worker_main(conn: Connection, config: TrustConfig, memory_limit: int, nice: int) -> None:
    # A terminal's Ctrl-C reaches the whole process group: it is for the parent, which stops
    # the workers (VerificationPool.close; a dead parent closes the pipe: EOFError below). Left
    # to Python's handler it printed a KeyboardInterrupt traceback from conn.recv() on every
    # `make run` stop (new user 14 F6).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    if nice > 0:
        # Anonymous work yields the CPU to agencies' signing whenever both want it.
        os.nice(nice)
    from signing_service._async import run_sync
    from signing_service.services.container import quiet_library_loggers
    from signing_service.verification.validate import (
        EncryptedPdfError,
        NotPdfError,
        UnreadablePdfError,
        Verifier,
    )

    quiet_library_loggers()
    verifier = Verifier(config.load())
    while True:
        try:
            data, moment = conn.recv()
        except (EOFError, OSError):
            return
        try:
            report = run_sync(verifier.async_verify(data, validation_time=moment)).to_dict()
            # Serialised here, so the API process only forwards bytes (no per-request JSON or
            # model work competing with signing for its interpreter lock).
            body = json.dumps(report, ensure_ascii=False).encode()
            summary = {
                "verdict": report["verdict"],
                "signatures": len(report["signatures"]),
                "sha256": report["document"]["sha256"],
            }
            conn.send(("ok", (body, summary)))
        except NotPdfError:
            conn.send(("error", "NOT_A_PDF"))
        except UnreadablePdfError:
            conn.send(("error", "MALFORMED_PDF"))
        except EncryptedPdfError:
            conn.send(("error", "ENCRYPTED_PDF"))
        except MemoryError:
            conn.send(("error", "RESOURCE_LIMIT"))
            return  # the heap may be in any state: start afresh
        except RecursionError:
            conn.send(("error", "RESOURCE_LIMIT"))
        except Exception as e:
            log.exception("verification worker failed")
            conn.send(("bug", type(e).__name__))


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _Worker:
    def __init__(self, config: TrustConfig, memory_limit: int, nice: int) -> None:
        ctx = _context()
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main,
            args=(child, config, memory_limit, nice),
            name="verification-worker",
            daemon=True,
        )
        self.process.start()
        child.close()

    def rss_bytes(self) -> int | None:
        """The worker's resident memory now (Linux ``/proc``), ``None`` when unknown."""
        try:
            with open(f"/proc/{self.process.pid}/statm", "rb") as statm:
                return int(statm.read().split()[1]) * _PAGE_SIZE
        except (OSError, IndexError, ValueError):
            return None

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.join(5)
        finally:
            self.conn.close()


class VerificationPool:
    """``processes`` workers; a request waits at most for ``max_pending`` others, then runs in
    at most ``timeout`` seconds within ``memory_limit_bytes`` of address space. A worker whose
    resident memory is above ``max_rss_bytes`` once it has answered is replaced by a fresh one
    (0: never), so that the memory one large verification left behind is given back."""

    def __init__(
        self,
        config: TrustConfig,
        *,
        processes: int,
        timeout: float,
        max_pending: int,
        memory_limit_bytes: int,
        retry_after: int,
        nice: int = 10,
        max_rss_bytes: int = 0,
    ) -> None:
        self._config = config
        self._timeout = timeout
        self._memory_limit = memory_limit_bytes
        self._nice = nice
        self._max_rss = max_rss_bytes
        self.recycled = 0  # workers replaced for their resident memory
        self._retry_after = retry_after
        self._slots = threading.BoundedSemaphore(processes + max_pending)
        self._in_flight = 0
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(processes):
            self._add_worker()

    def _add_worker(self) -> None:
        worker = _Worker(self._config, self._memory_limit, self._nice)
        with self._lock:
            self._all.append(worker)
        self._idle.put(worker)

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
            closed = self._closed
        if not closed:
            self._add_worker()

    def verify(self, data: bytes, validation_time: datetime | None) -> dict[str, Any]:
        """The report for ``data`` as a dict (see :meth:`verify_json`)."""
        body, _summary = self.verify_json(data, validation_time)
        return json.loads(body)  # type: ignore[no-any-return]

    def verify_json(
        self, data: bytes, validation_time: datetime | None
    ) -> tuple[bytes, dict[str, Any]]:
        """The report for ``data`` as JSON bytes, and a summary (verdict, number of signatures,
        document SHA-256) — blocking; call it from a thread. Raises the service's errors: upload
        errors, ``VERIFICATION_TIME_LIMIT``, ``VERIFICATION_RESOURCE_LIMIT``,
        ``VERIFICATION_BUSY``."""
        if not self._slots.acquire(blocking=False):
            raise errors.VerificationBusy(headers={"Retry-After": str(self._retry_after)})
        with self._lock:
            self._in_flight += 1
        try:
            worker = self._idle.get()
            try:
                worker.conn.send((data, validation_time))
                if not worker.conn.poll(self._timeout):
                    self._replace(worker)
                    raise errors.VerificationTimeLimit(details={"seconds": round(self._timeout)})
                kind, value = worker.conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                # The worker died (over its memory limit, killed): a fresh one takes its place.
                self._replace(worker)
                raise errors.VerificationResourceLimit() from None
            if kind == "error" and value == "RESOURCE_LIMIT":
                self._replace(worker)
            elif self._over_rss(worker):
                # Answered already: the replacement is forked from the fork server (tens of
                # ms) while this request's answer goes out.
                with self._lock:
                    self.recycled += 1
                self._replace(worker)
            else:
                self._idle.put(worker)
            if kind == "ok":
                return value  # type: ignore[no-any-return]
            if kind == "error":
                raise _ERRORS[value]()
            raise errors.ServiceError(details={"reason": value})
        finally:
            with self._lock:
                self._in_flight -= 1
            self._slots.release()

    def _over_rss(self, worker: _Worker) -> bool:
        if self._max_rss <= 0:
            return False
        rss = worker.rss_bytes()
        if rss is None or rss <= self._max_rss:
            return False
        log.info("verification worker at %d MB resident: replaced", rss // 1024**2)
        return True

    @property
    def worker_pids(self) -> list[int | None]:
        """The process ids of the current workers."""
        with self._lock:
            return [worker.process.pid for worker in self._all]

    @property
    def in_flight(self) -> int:
        """Requests waiting for or using a worker now."""
        with self._lock:
            return self._in_flight

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.kill()
