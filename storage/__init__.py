"""Object storage behind one interface: filesystem (the embedded
default) and MinIO/S3.

Vendor errors are translated here: a missing object is :class:`ObjectNotFound`, an unreachable
backend :class:`StorageUnavailableError`. Callers never see backend-specific exceptions.
"""

from storage.base import (
    ListedObject,
    LockStatus,
    ObjectInfo,
    ObjectLocked,
    ObjectNotFound,
    ObjectReader,
    ObjectStore,
    StorageUnavailableError,
)
from storage.factory import open_store

__all__ = [
    "ListedObject",
    "LockStatus",
    "ObjectInfo",
    "ObjectLocked",
    "ObjectNotFound",
    "ObjectReader",
    "ObjectStore",
    "StorageUnavailableError",
    "open_store",
]
