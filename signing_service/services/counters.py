"""Anonymous verification counters (issue 9: counted, not written to the audit log one by
one). Kept apart from :mod:`.verification`, which loads the verifier (pyHanko): the counters
are also used by the API's edge and the CLI, which must not pay for it."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from signing_service.store.db import Database
from signing_service.store.models import VerificationCount
from signing_service.timefmt import VIETNAM_TZ

if TYPE_CHECKING:
    from signing_service.services.container import Services

log = logging.getLogger(__name__)


class VerificationCounter:
    """Anonymous verifications counted per day (Vietnam time, +07:00) and outcome (the verdict,
    or the code of the error that refused the request), kept in memory and added to the
    ``verification_counts`` table within ``flush_seconds``: a background thread, started by the
    first count, writes what is pending every ``flush_seconds`` (a quiet server's counts reach
    the table, and `verification stats`, too: newuser finding 4), a verification after that
    long flushes at once, and :meth:`close` writes the rest when the service stops.

    Why not one audit entry each (as before issue 9): the audit chain serialises its writers
    (one head row), so anonymous load slowed every agency's signing, and the log grew with
    traffic nobody is accountable for. Counts lost in a crash are at most ``flush_seconds``
    worth. Each server process counts on its own; the table adds them up (each flush adds its
    increments). Thread-safe."""

    def __init__(
        self,
        db: Database,
        flush_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.flush_seconds = flush_seconds
        self.clock = clock
        self._pending: Counter[tuple[date, str]] = Counter()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._last_flush = clock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    def add(self, outcome: str, when: datetime | None = None, *, may_flush: bool = True) -> None:
        """Count one verification ended with ``outcome`` (at ``when``, default now); flush
        when due, unless ``may_flush`` is false (the caller is the event loop, which must not
        wait for the database)."""
        day = (when or datetime.now(VIETNAM_TZ)).astimezone(VIETNAM_TZ).date()
        with self._lock:
            self._pending[(day, outcome)] += 1
            due = self.clock() - self._last_flush >= self.flush_seconds
            if self._timer is None and not self._stop.is_set():
                self._timer = threading.Thread(
                    target=self._flush_periodically, name="verification-counts", daemon=True
                )
                self._timer.start()
        if due and may_flush:
            self.flush()

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            if self.pending():
                self.flush()

    def close(self) -> None:
        """Stop the background flushes and write what is pending (the service stops)."""
        self._stop.set()
        timer = self._timer
        if timer is not None and timer is not threading.current_thread():
            timer.join(timeout=5)
        self.flush()

    def pending(self) -> dict[tuple[date, str], int]:
        """Counts not yet written to the database."""
        with self._lock:
            return dict(self._pending)

    def flush(self) -> None:
        """Add the pending counts to the table (one transaction). If the database does not
        answer, they stay pending for the next flush (logged, never raised: a verification's
        answer does not depend on its count being stored)."""
        if not self._flush_lock.acquire(blocking=False):
            return  # another thread is flushing
        try:
            with self._lock:
                taken, self._pending = self._pending, Counter()
                self._last_flush = self.clock()
            if not taken:
                return
            try:
                with self.db.transaction() as session:
                    for (day, outcome), count in sorted(taken.items()):
                        session.execute(_add_count(session, day, outcome, count))
            except Exception:  # kept for the next flush, see above
                log.exception("could not store the verification counts; kept for later")
                with self._lock:
                    self._pending.update(taken)
        finally:
            self._flush_lock.release()


def _add_count(session: Session, day: date, outcome: str, count: int) -> Any:
    """``INSERT … ON CONFLICT (day, outcome) DO UPDATE SET count = count + n`` for the
    session's database (SQLite ≥ 3.24 and PostgreSQL both have it)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(VerificationCount).values(day=day, outcome=outcome, count=count)
    return stmt.on_conflict_do_update(
        index_elements=["day", "outcome"],
        set_={"count": VerificationCount.count + stmt.excluded.count},
    )


def verification_counts(services: Services, since: date | None = None) -> list[dict[str, Any]]:
    """The stored counts (``{"day": "2026-11-29", "outcome": "TOTAL_PASSED", "count": 12}``),
    newest day first, from ``since`` on; this process's pending counts are flushed first."""
    services.verification_counter.flush()
    with services.db.transaction() as session:
        query = select(VerificationCount).order_by(
            VerificationCount.day.desc(), VerificationCount.outcome
        )
        if since is not None:
            query = query.where(VerificationCount.day >= since)
        rows = session.scalars(query).all()
    return [{"day": r.day.isoformat(), "outcome": r.outcome, "count": r.count} for r in rows]
