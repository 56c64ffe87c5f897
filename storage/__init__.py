"""Object storage behind one interface: filesystem (embedded default) now, MinIO/S3 next.

Vendor errors are translated here: a missing object is :class:`ObjectNotFound`, an unreachable
backend :class:`StorageUnavailableError`. Callers never see backend-specific exceptions.
"""

from storage.base import ObjectInfo, ObjectNotFound, ObjectStore, StorageUnavailableError
from storage.factory import open_store

__all__ = ["ObjectInfo", "ObjectNotFound", "ObjectStore", "StorageUnavailableError", "open_store"]
