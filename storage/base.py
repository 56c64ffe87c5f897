from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


class ObjectNotFound(KeyError):
    pass


class StorageUnavailableError(OSError):
    pass


class InvalidKey(ValueError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str


def check_key(key: str) -> str:
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in key
        or "\x00" in key
        or len(key) > 512
    ):
        raise InvalidKey(key)
    return key


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes) -> ObjectInfo:
        """Write atomically: readers see the whole object or nothing."""

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def check(self) -> None:
        """Raise :class:`StorageUnavailableError` when the backend cannot serve requests."""
