"""MinIO / S3 backend through the ``minio`` SDK. Vendor errors are translated here.

Large objects go up as multipart uploads (``PART_SIZE`` parts, a few in flight), so memory stays
bounded whatever the object's size. Retention uses S3 object lock in governance mode: the bucket
must be created with object lock (versioning on); :meth:`MinioStore.ensure_bucket` does that.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import queue
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import urllib3
from minio import Minio
from minio.commonconfig import GOVERNANCE
from minio.datatypes import Part
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.helpers import genheaders
from minio.retention import Retention

from storage.base import (
    CHUNK,
    HashingReader,
    ListedObject,
    LockStatus,
    ObjectInfo,
    ObjectLocked,
    ObjectNotFound,
    StorageUnavailableError,
    check_key,
)

PART_SIZE = 8 * 1024 * 1024
PARALLEL_PARTS = 3
NOT_FOUND = ("NoSuchKey", "NoSuchObject", "NoSuchVersion")
TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)


def _is_lock_refusal(code: str | None, message: str | None) -> bool:
    # MinIO answers "InvalidRequest: Object is WORM protected"; AWS answers AccessDenied.
    text = (message or "").lower()
    return code == "AccessDenied" or "worm" in text or "lock" in text or "retention" in text


def _fill(stream: BinaryIO, buffer: bytearray) -> int:
    """Read into ``buffer`` until it is full or the stream ends."""
    readinto = getattr(stream, "readinto", None)
    view = memoryview(buffer)
    filled = 0
    while filled < len(view):
        if readinto is not None:
            n = readinto(view[filled:])
        else:
            data = stream.read(len(view) - filled)
            n = len(data)
            view[filled : filled + n] = data
        if not n:
            break
        filled += n
    return filled


class MinioReader:
    def __init__(self, response: Any) -> None:
        self._response = response
        self.size = int(response.headers.get("Content-Length", 0))

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._response.stream(CHUNK)
        except TRANSPORT_ERRORS as e:
            raise StorageUnavailableError(f"object store read failed: {type(e).__name__}") from None

    def close(self) -> None:
        self._response.close()
        self._response.release_conn()


class MinioStore:
    """``s3://ACCESS:SECRET@host:port/bucket?secure=false``: objects in one bucket."""

    def __init__(self, client: Minio, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @classmethod
    def from_parts(
        cls, endpoint: str, access_key: str, secret_key: str, bucket: str, secure: bool = True
    ) -> MinioStore:
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3, read=30),
            retries=urllib3.Retry(
                total=2,
                backoff_factor=0.2,
                status_forcelist=[502, 503, 504],
                respect_retry_after_header=False,
            ),
            maxsize=16,
        )
        client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, http_client=http
        )
        return cls(client, bucket)

    def _unavailable(self, e: Exception) -> StorageUnavailableError:
        return StorageUnavailableError(f"object store unavailable: {type(e).__name__}")

    def ensure_bucket(self) -> None:
        """Create the bucket with object lock when it does not exist yet."""
        try:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket, object_lock=True)
        except (S3Error, *TRANSPORT_ERRORS) as e:
            raise self._unavailable(e) from None

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retain_until: datetime | None = None,
        sha256: str | None = None,
    ) -> ObjectInfo:
        # ``sha256`` is not needed here: the digest is computed while uploading anyway.
        return self.put_stream(key, io.BytesIO(data), len(data), retain_until=retain_until)

    # Uploads can start while the data is still arriving (unknown length: multipart).
    streams_while_receiving = True

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        size: int | None,
        *,
        retain_until: datetime | None = None,
    ) -> ObjectInfo:
        check_key(key)
        retention = Retention(GOVERNANCE, retain_until) if retain_until else None
        reader = HashingReader(stream)
        try:
            # A single PUT, or a multipart upload completed in one request: either way readers
            # see the whole object or none.
            if size is None:
                written, sha256 = self._put_unknown_length(key, stream, retention)
                return ObjectInfo(key=key, size=written, sha256=sha256)
            else:
                self.client.put_object(
                    self.bucket,
                    key,
                    reader,  # type: ignore[arg-type]
                    size,
                    part_size=PART_SIZE,
                    num_parallel_uploads=PARALLEL_PARTS,
                    retention=retention,
                )
        except (S3Error, *TRANSPORT_ERRORS) as e:
            raise self._unavailable(e) from None
        except ValueError as e:  # the SDK's "stream having not enough data"
            raise StorageUnavailableError(f"upload stream ended early: {e}") from None
        return ObjectInfo(key=key, size=reader.size, sha256=reader.sha256)

    def _put_unknown_length(
        self, key: str, stream: BinaryIO, retention: Retention | None
    ) -> tuple[int, str]:
        """A stream whose length is known only at its end (an upload still arriving).

        The SDK's own unknown-length path reads one byte ahead and copies every part three
        times into new buffers. Here ``PARALLEL_PARTS`` + 1 part buffers are allocated once per
        upload and reused: each part is copied once from the stream into a free buffer (and
        hashed there), sent, and its buffer handed back, so memory stays at a few parts
        whatever the object's size. It uses the SDK's multipart primitives (pinned version,
        covered by the storage contract tests). Returns (size, SHA-256).
        """
        headers = genheaders(None, None, None, retention, False)
        headers["Content-Type"] = "application/octet-stream"
        free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(PARALLEL_PARTS + 1):
            free.put(bytearray(PART_SIZE))
        digest = hashlib.sha256()
        size = 0

        def next_part() -> tuple[bytearray, memoryview]:
            nonlocal size
            buffer = free.get()  # waits until a part in flight is sent
            view = memoryview(buffer)[: _fill(stream, buffer)]
            digest.update(view)
            size += len(view)
            return buffer, view

        buffer, view = next_part()
        if len(view) < PART_SIZE:
            self.client._put_object(self.bucket, key, bytes(view), headers)
            return size, digest.hexdigest()
        upload_id = self.client._create_multipart_upload(self.bucket, key, headers)
        try:
            etags: list[Future[str]] = []
            with ThreadPoolExecutor(PARALLEL_PARTS, thread_name_prefix="s3-part") as pool:
                while len(view):
                    future = pool.submit(
                        self.client._upload_part,
                        self.bucket,
                        key,
                        view,  # type: ignore[arg-type]  # any buffer: urllib3 sends it as is
                        None,
                        upload_id,
                        len(etags) + 1,
                    )
                    future.add_done_callback(lambda _f, b=buffer: free.put(b))
                    etags.append(future)
                    if any(f.done() and f.exception() for f in etags[-PARALLEL_PARTS:]):
                        break
                    buffer, view = next_part()
            parts = [Part(number, f.result()) for number, f in enumerate(etags, start=1)]
            self.client._complete_multipart_upload(self.bucket, key, upload_id, parts)
        except BaseException:
            with contextlib.suppress(Exception):
                self.client._abort_multipart_upload(self.bucket, key, upload_id)
            raise
        return size, digest.hexdigest()

    def set_retention(self, key: str, retain_until: datetime) -> None:
        check_key(key)
        try:
            self.client.set_object_retention(self.bucket, key, Retention(GOVERNANCE, retain_until))
        except S3Error as e:
            if e.code in NOT_FOUND:
                raise ObjectNotFound(key) from None
            if _is_lock_refusal(e.code, e.message):
                raise ObjectLocked(key) from None
            raise self._unavailable(e) from None
        except TRANSPORT_ERRORS as e:
            raise self._unavailable(e) from None

    def get(self, key: str) -> bytes:
        reader = self.open(key)
        try:
            return b"".join(reader)
        finally:
            reader.close()

    def open(self, key: str) -> MinioReader:
        check_key(key)
        try:
            return MinioReader(self.client.get_object(self.bucket, key))
        except S3Error as e:
            if e.code in NOT_FOUND:
                raise ObjectNotFound(key) from None
            raise self._unavailable(e) from None
        except TRANSPORT_ERRORS as e:
            raise self._unavailable(e) from None

    def presigned_url(self, key: str, expires: timedelta) -> str:
        check_key(key)
        try:
            return self.client.presigned_get_object(self.bucket, key, expires=expires)
        except (S3Error, *TRANSPORT_ERRORS) as e:
            raise self._unavailable(e) from None

    def delete(self, key: str, *, bypass_retention: bool = False) -> None:
        """Every version is removed: with object lock the bucket is versioned, and a plain
        DELETE would only hide a locked version behind a delete marker."""
        check_key(key)
        try:
            versions = [
                DeleteObject(obj.object_name, obj.version_id)
                for obj in self.client.list_objects(self.bucket, prefix=key, include_version=True)
                if obj.object_name == key
            ]
            if not versions:
                return
            failures = list(
                self.client.remove_objects(
                    self.bucket, versions, bypass_governance_mode=bypass_retention
                )
            )
        except (S3Error, *TRANSPORT_ERRORS) as e:
            raise self._unavailable(e) from None
        if failures:
            if any(_is_lock_refusal(f.code, f.message) for f in failures):
                raise ObjectLocked(key)
            raise StorageUnavailableError(
                f"delete failed: {failures[0].code} {failures[0].message}"
            )

    def exists(self, key: str) -> bool:
        check_key(key)
        try:
            self.client.stat_object(self.bucket, key)
            return True
        except S3Error as e:
            if e.code in NOT_FOUND:
                return False
            raise self._unavailable(e) from None
        except TRANSPORT_ERRORS as e:
            raise self._unavailable(e) from None

    def list(self, prefix: str = "") -> Iterator[str]:
        for item in self.list_info(prefix):
            yield item.key

    def list_info(self, prefix: str = "") -> Iterator[ListedObject]:
        try:
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                assert obj.object_name is not None
                modified = obj.last_modified or datetime.now(UTC)
                yield ListedObject(obj.object_name, obj.size or 0, modified)
        except (S3Error, *TRANSPORT_ERRORS) as e:
            raise self._unavailable(e) from None

    def lock_status(self, key: str) -> LockStatus:
        check_key(key)
        try:
            self.client.stat_object(self.bucket, key)
            retention = self.client.get_object_retention(self.bucket, key)
            hold = self.client.is_object_legal_hold_enabled(self.bucket, key)
        except S3Error as e:
            if e.code in NOT_FOUND:
                raise ObjectNotFound(key) from None
            if e.code in ("NoSuchObjectLockConfiguration", "InvalidRequest"):
                return LockStatus(None, False)
            raise self._unavailable(e) from None
        except TRANSPORT_ERRORS as e:
            raise self._unavailable(e) from None
        until = retention.retain_until_date if retention is not None else None
        return LockStatus(until, bool(hold))

    def set_legal_hold(self, key: str, on: bool) -> None:
        check_key(key)
        try:
            if on:
                self.client.enable_object_legal_hold(self.bucket, key)
            else:
                self.client.disable_object_legal_hold(self.bucket, key)
        except S3Error as e:
            if e.code in NOT_FOUND:
                raise ObjectNotFound(key) from None
            raise self._unavailable(e) from None
        except TRANSPORT_ERRORS as e:
            raise self._unavailable(e) from None

    def check(self) -> None:
        try:
            if not self.client.bucket_exists(self.bucket):
                raise StorageUnavailableError(f"bucket {self.bucket} does not exist")
        except (S3Error, *TRANSPORT_ERRORS) as e:
            raise self._unavailable(e) from None
