"""Run a coroutine to completion from synchronous code (a worker thread or the CLI).

Not ``asyncio.run``: in the main thread, Python 3.11's ``asyncio.run`` formats the repr of the
main task on exit (signal-handler bookkeeping), and when the task's result is a signed 1 MB PDF
that alone costs ~6 ms per call. A private event loop has no such cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
