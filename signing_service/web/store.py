"""Verification results kept for a short while, so the page's "Tải báo cáo PDF" link can
render the report without the citizen uploading the file again.

Only the report JSON is kept (public data: verdict, certificate names, codes, the registry's
public metadata), never the file's bytes. Under an unguessable token (192 random bits), for
``ttl_seconds`` (15 minutes), bounded in count and in bytes: the oldest entries go first, so an
anonymous flood can use at most ``max_bytes`` of memory and never grows the process.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict

TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")


class ReportStore:
    """Report JSON bytes under tokens, at most ``max_items`` entries and ``max_bytes`` bytes in
    all, each for ``ttl_seconds``. Thread-safe (the page's handlers run on the event loop, the
    PDF rendering in worker threads)."""

    def __init__(
        self, *, max_items: int = 500, max_bytes: int = 16 * 1024 * 1024, ttl_seconds: int = 900
    ) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.ttl = ttl_seconds
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, report: bytes) -> str | None:
        """Keep ``report``; its token (32 URL-safe characters), or ``None`` when it alone is
        larger than the store (the page then shows no download link)."""
        if len(report) > self.max_bytes:
            return None
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            while self._entries and (
                len(self._entries) >= self.max_items or self._bytes + len(report) > self.max_bytes
            ):
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= len(dropped)
            self._entries[token] = (now + self.ttl, report)
            self._bytes += len(report)
        return token

    def get(self, token: str) -> bytes | None:
        """The report kept under ``token``; ``None`` when unknown, malformed or expired."""
        if not TOKEN.fullmatch(token):
            return None
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            found = self._entries.get(token)
        return found[1] if found else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes held."""
        with self._lock:
            return self._bytes

    def _expire(self, now: float) -> None:
        # Insertion order is expiry order (one ttl for all).
        while self._entries:
            token, (expires, data) = next(iter(self._entries.items()))
            if expires > now:
                break
            del self._entries[token]
            self._bytes -= len(data)
