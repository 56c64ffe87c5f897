"""The bounded lane PDF reports are rendered in (issue 11 fixes, red team F2).

Rendering a report costs typst typesetting, a PAdES signature and a TSA round trip (0.1–1 s,
more for a report of hundreds of signatures), all in the API process. Anonymous callers ask
for it (the page's "Tải báo cáo PDF", ``POST /v1/verifications?format=pdf``): without a bound,
eight clients fetching reports slowed agency signing ninefold. So at most ``concurrency``
renders run at a time in a process, at most ``queue`` more wait; any further caller is
answered :class:`errors.ReportBusy` (503, Vietnamese) at once instead of piling up threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from signing_service import errors

T = TypeVar("T")

CONCURRENCY = 1
QUEUE = 4


class RenderLane:
    """At most ``concurrency`` jobs at a time, ``queue`` more waiting, the rest refused with
    :class:`errors.ReportBusy`. One per application (``app.state``); the semaphore is made
    for the running event loop (a test client's loop differs from the server's)."""

    def __init__(self, *, concurrency: int = CONCURRENCY, queue: int = QUEUE) -> None:
        self.concurrency = concurrency
        self.queue = queue
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._pending = 0  # running and waiting jobs of this loop

    def _current(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._loop, self._pending = loop, 0
            self._semaphore = asyncio.Semaphore(self.concurrency)
        return self._semaphore

    async def run(self, job: Callable[[], Awaitable[T]]) -> T:
        """``await job()`` once a slot is free. Raises :class:`errors.ReportBusy` (503) without
        waiting when ``concurrency + queue`` jobs are already running or waiting."""
        semaphore = self._current()
        if self._pending >= self.concurrency + self.queue:
            raise errors.ReportBusy()
        self._pending += 1
        try:
            async with semaphore:
                return await job()
        finally:
            self._pending -= 1


def lane_of(state: object) -> RenderLane:
    """The application's :class:`RenderLane` (``app.state.report_lane``), made on first use:
    one for the page's report links and ``POST /v1/verifications?format=pdf`` together."""
    lane: RenderLane | None = getattr(state, "report_lane", None)
    if lane is None:
        lane = RenderLane()
        setattr(state, "report_lane", lane)  # noqa: B010 - Starlette's State is dynamic
    return lane
