from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol

# Chunk size for streaming reads and writes: big enough for throughput, small enough that a
# 1 GB object never sits in memory.
CHUNK = 1024 * 1024


class ObjectNotFound(KeyError):
    pass


class StorageUnavailableError(OSError):
    pass


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


class ObjectReader(Protocol):
    """An open object: iterate for its chunks, then close."""

    size: int

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes, *, retain_until: datetime | None = None) -> ObjectInfo:
        """Write atomically: readers see the whole object or nothing."""

    def put_stream(
        self, key: str, stream: BinaryIO, size: int, *, retain_until: datetime | None = None
    ) -> ObjectInfo:
        """Write ``size`` bytes read from ``stream`` without holding them all in memory; the
        SHA-256 is computed while streaming. Atomic like :meth:`put`."""

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
