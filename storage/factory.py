from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from storage.base import ObjectStore
from storage.filesystem import FilesystemStore


def open_store(url: str) -> ObjectStore:
    """``file:///abs/path`` (default). ``s3://`` / MinIO arrives with the storage issue."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FilesystemStore(Path(unquote(parsed.netloc + parsed.path)))
    raise ValueError(f"unsupported storage URL scheme: {parsed.scheme!r}")
