"""Give freed memory back to the system after large transfers (glibc only; else a no-op).

Multi-megabyte upload and download buffers are allocated and freed by several threads; glibc
keeps the freed space in its arenas, so a server that moved a few large files keeps tens of MB
it no longer uses. ``malloc_trim`` returns it; it costs well under a millisecond.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
