"""Object store contract: the same tests against the filesystem backend and a real MinIO."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage import ObjectNotFound, open_store
from storage.base import InvalidKey
from tests.support.minio_server import MinioServer, find_binary


@pytest.fixture(scope="session")
def minio_server() -> Iterator[MinioServer | None]:
    binary = find_binary()
    if binary is None:
        if os.environ.get("SIGNING_SERVICE_TEST_REQUIRE_MINIO") == "1":
            pytest.fail("MinIO is required but its binary was not found")
        yield None
        return
    server = MinioServer(binary).start()
    yield server
    server.stop()


@pytest.fixture(params=["filesystem", "minio"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "filesystem":
        return open_store(f"file://{tmp_path / 'objects'}")
    server: MinioServer | None = request.getfixturevalue("minio_server")
    if server is None:
        pytest.skip("MinIO binary not built yet (the storage issue adds it to make test)")
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    backend = open_store(server.url(bucket))
    backend.client.make_bucket(bucket)  # type: ignore[attr-defined]
    return backend


def test_round_trip_and_digest(store: Any) -> None:
    info = store.put("agency/2026/11/a.pdf", b"%PDF-1.7 data")
    assert info.size == 13
    assert store.get("agency/2026/11/a.pdf") == b"%PDF-1.7 data"
    assert store.exists("agency/2026/11/a.pdf")
    assert list(store.list("agency/")) == ["agency/2026/11/a.pdf"]


def test_overwrite_is_whole(store: Any) -> None:
    store.put("k", b"a" * 1000)
    store.put("k", b"b" * 10)
    assert store.get("k") == b"b" * 10
    assert list(store.list()) == ["k"]  # no temporary objects left behind


def test_missing_and_delete(store: Any) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("nope")
    store.put("x", b"1")
    store.delete("x")
    store.delete("x")  # idempotent
    assert not store.exists("x")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", "", "a\\b"])
def test_hostile_keys_refused(store: Any, key: str) -> None:
    with pytest.raises(InvalidKey):
        store.put(key, b"x")


def test_check(store: Any) -> None:
    store.check()
