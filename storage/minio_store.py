"""MinIO / S3 backend through the ``minio`` SDK. Vendor errors are translated here."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import urllib3
from minio import Minio
from minio.error import S3Error

from storage.base import ObjectInfo, ObjectNotFound, StorageUnavailableError, check_key


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

    def put(self, key: str, data: bytes) -> ObjectInfo:
        check_key(key)
        try:
            # A single PUT is atomic in S3: readers see the whole object or none.
            self.client.put_object(self.bucket, key, io.BytesIO(data), len(data))
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as e:
            raise self._unavailable(e) from None
        return ObjectInfo(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    def get(self, key: str) -> bytes:
        check_key(key)
        response = None
        try:
            response = self.client.get_object(self.bucket, key)
            return bytes(response.read())
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(key) from None
            raise self._unavailable(e) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise self._unavailable(e) from None
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            self.client.remove_object(self.bucket, key)
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as e:
            raise self._unavailable(e) from None

    def exists(self, key: str) -> bool:
        check_key(key)
        try:
            self.client.stat_object(self.bucket, key)
            return True
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchObject"):
                return False
            raise self._unavailable(e) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise self._unavailable(e) from None

    def list(self, prefix: str = "") -> Iterator[str]:
        try:
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                yield obj.object_name
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as e:
            raise self._unavailable(e) from None

    def check(self) -> None:
        try:
            if not self.client.bucket_exists(self.bucket):
                raise StorageUnavailableError(f"bucket {self.bucket} does not exist")
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as e:
            raise self._unavailable(e) from None
