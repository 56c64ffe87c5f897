from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from storage.base import ObjectStore
from storage.filesystem import FilesystemStore


def open_store(url: str) -> ObjectStore:
    """``file:///abs/path`` (default) or ``s3://ACCESS:SECRET@host:port/bucket[?secure=false]``
    (MinIO or any S3-compatible store)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FilesystemStore(Path(unquote(parsed.netloc + parsed.path)))
    if parsed.scheme == "s3":
        from storage.minio_store import MinioStore

        query = parse_qs(parsed.query)
        secure = query.get("secure", ["true"])[0].lower() != "false"
        bucket = parsed.path.strip("/")
        if not (parsed.hostname and bucket and parsed.username and parsed.password):
            raise ValueError("s3 URL needs access key, secret, host and bucket")
        endpoint = f"{parsed.hostname}:{parsed.port}" if parsed.port else parsed.hostname
        return MinioStore.from_parts(
            endpoint, unquote(parsed.username), unquote(parsed.password), bucket, secure=secure
        )
    raise ValueError(f"unsupported storage URL scheme: {parsed.scheme!r}")
