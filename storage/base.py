from __future__ import annotations

import collections
import contextlib
import hashlib
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol

# Chunk size for streaming reads and writes: big enough for throughput, small enough that a
# 1 GB object never sits in memory.
CHUNK = 1024 * 1024


class ObjectNotFound(KeyError):
    pass


# Told of every backend failure (the service's storage error metric): one call per
# StorageUnavailableError made, i.e. per failure, whichever backend and operation.
_unavailable_observers: list[Callable[[], None]] = []


def observe_unavailable(callback: Callable[[], None]) -> None:
    """Call ``callback()`` whenever a :class:`StorageUnavailableError` is raised (registered
    once however often this is called with it; it must not raise)."""
    if callback not in _unavailable_observers:
        _unavailable_observers.append(callback)


class StorageUnavailableError(OSError):
    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        for callback in tuple(_unavailable_observers):
            # Counting never hides the failure itself.
            with contextlib.suppress(Exception):
                callback()


class ObjectLocked(PermissionError):
    """The object is under retention or legal hold and cannot be deleted."""


class InvalidKey(ValueError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class LockStatus:
    retain_until: datetime | None
    legal_hold: bool

    def locked(self, now: datetime) -> bool:
        return self.legal_hold or (self.retain_until is not None and self.retain_until > now)


def check_key(key: str) -> str:
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
        or "\\" in key
        or "\x00" in key
        or len(key) > 512
    ):
        raise InvalidKey(key)
    return key


class HashingReader:
    """Wraps a readable stream: counts and SHA-256-hashes what is read through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.size = 0
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.size += len(data)
        self._hash.update(data)
        return data

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class ChunkPipe:
    """A bounded, thread-safe pipe: a producer writes chunks, a consumer reads it as a stream
    (``read(n)`` or ``readinto(buffer)``), e.g. a store's ``put_stream`` running in another
    thread while the chunks are still arriving. ``abort`` makes the consumer's next read
    raise."""

    def __init__(self, max_chunks: int = 8) -> None:
        self._queue: queue.Queue[bytes | list[bytes] | BaseException | None] = queue.Queue(
            max_chunks
        )
        self._pending: collections.deque[memoryview] = collections.deque()
        self._ended = False

    def put_nowait(self, chunk: bytes | list[bytes]) -> bool:
        try:
            self._queue.put_nowait(chunk)
            return True
        except queue.Full:
            return False

    def put(self, chunk: bytes | list[bytes], timeout: float | None = None) -> bool:
        """Blocking put; False when ``timeout`` passed and the pipe is still full."""
        try:
            self._queue.put(chunk, timeout=timeout)
            return True
        except queue.Full:
            return False

    def close(self, timeout: float | None = None) -> bool:
        """Mark the end; False when ``timeout`` passed and the pipe is still full."""
        try:
            self._queue.put(None, timeout=timeout)
            return True
        except queue.Full:
            return False

    def abort(self, error: BaseException) -> None:
        # Make room if the consumer is gone, so the producer never blocks here.
        while True:
            try:
                self._queue.put_nowait(error)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()

    def _next(self) -> bool:
        """Wait for the next item; False at the end."""
        if self._ended:
            return False
        item = self._queue.get()
        if item is None:
            self._ended = True
            return False
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        for chunk in item if isinstance(item, list) else [item]:
            if chunk:
                self._pending.append(memoryview(chunk))
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` (fewer bytes only at the end): one copy, no new allocation."""
        view = memoryview(buffer)
        filled = 0
        while filled < len(view):
            if not self._pending and not self._next():
                break
            if not self._pending:
                continue
            chunk = self._pending[0]
            n = min(len(chunk), len(view) - filled)
            view[filled : filled + n] = chunk[:n]
            filled += n
            if n == len(chunk):
                self._pending.popleft()
            else:
                self._pending[0] = chunk[n:]
        return filled

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = [bytes(c) for c in self._pending]
            self._pending.clear()
            while self._next():
                parts.extend(bytes(c) for c in self._pending)
                self._pending.clear()
            return b"".join(parts)
        buffer = bytearray(n)
        got = self.readinto(buffer)
        return bytes(buffer[:got]) if got < n else bytes(buffer)


class ObjectReader(Protocol):
    """An open object: iterate for its chunks, then close."""

    size: int

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class ObjectStore(Protocol):
    def put(
        self,
        key: str,
        data: bytes,
        *,
        retain_until: datetime | None = None,
        sha256: str | None = None,
    ) -> ObjectInfo:
        """Write atomically: readers see the whole object or nothing. ``sha256``: the hex
        SHA-256 of ``data`` when the caller has already computed it (then not computed again;
        the returned :class:`ObjectInfo` carries it)."""

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        size: int | None,
        *,
        retain_until: datetime | None = None,
    ) -> ObjectInfo:
        """Write what ``stream`` yields (``size`` bytes, or until it ends when ``size`` is None)
        without holding it all in memory; the SHA-256 is computed while streaming. Atomic
        like :meth:`put`."""

    def set_retention(self, key: str, retain_until: datetime) -> None:
        """Put (or extend) the object under retention until ``retain_until``."""

    def get(self, key: str) -> bytes: ...

    def open(self, key: str) -> ObjectReader: ...

    def delete(self, key: str, *, bypass_retention: bool = False) -> None:
        """Remove the object (every version of it). Raise :class:`ObjectLocked` while it is
        under legal hold, or under retention unless ``bypass_retention`` (governance mode)."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def list_info(self, prefix: str = "") -> Iterator[ListedObject]: ...

    def lock_status(self, key: str) -> LockStatus: ...

    def set_legal_hold(self, key: str, on: bool) -> None: ...

    def check(self) -> None:
        """Raise :class:`StorageUnavailableError` when the backend cannot serve requests."""
