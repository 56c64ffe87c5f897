"""Object store contract: the same tests against the filesystem backend and a real MinIO
(four erasure-coded drives, object lock on the bucket)."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storage import ObjectLocked, ObjectNotFound, StorageUnavailableError, open_store
from storage.base import InvalidKey
from tests.conftest import minio_or_skip


@pytest.fixture(params=["filesystem", "minio"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "filesystem":
        return open_store(f"file://{tmp_path / 'objects'}")
    server = minio_or_skip(request)
    backend = open_store(server.url(f"t-{uuid.uuid4().hex[:12]}"))
    backend.ensure_bucket()  # type: ignore[attr-defined]
    return backend


def test_round_trip_and_digest(store: Any) -> None:
    info = store.put("agency/2026/11/a.pdf", b"%PDF-1.7 data")
    assert info.size == 13
    assert info.sha256 == hashlib.sha256(b"%PDF-1.7 data").hexdigest()
    assert store.get("agency/2026/11/a.pdf") == b"%PDF-1.7 data"
    assert store.exists("agency/2026/11/a.pdf")
    assert list(store.list("agency/")) == ["agency/2026/11/a.pdf"]
    [listed] = store.list_info("agency/")
    assert listed.size == 13
    assert abs((datetime.now(UTC) - listed.modified).total_seconds()) < 120


def test_put_of_a_large_object_with_the_callers_digest(store: Any) -> None:
    # More than one write chunk (storage.base.CHUNK), so the object is written in pieces.
    data = os.urandom(2 * 1024 * 1024 + 17)
    digest = hashlib.sha256(data).hexdigest()
    info = store.put("agency/2026/11/big.pdf", data, sha256=digest)
    assert (info.size, info.sha256) == (len(data), digest)
    assert store.get("agency/2026/11/big.pdf") == data
    assert store.put("agency/2026/11/again.pdf", data).sha256 == digest  # computed when absent


def test_overwrite_is_whole(store: Any) -> None:
    store.put("k", b"a" * 1000)
    store.put("k", b"b" * 10)
    assert store.get("k") == b"b" * 10
    assert list(store.list()) == ["k"]  # no temporary objects left behind


def test_missing_and_delete(store: Any) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("nope")
    with pytest.raises(ObjectNotFound):
        store.open("nope")
    store.put("x", b"1")
    store.delete("x")
    store.delete("x")  # idempotent
    assert not store.exists("x")
    assert list(store.list()) == []


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", "", "a\\b", "a/.hidden"])
def test_hostile_keys_refused(store: Any, key: str) -> None:
    with pytest.raises(InvalidKey):
        store.put(key, b"x")


def test_check(store: Any) -> None:
    store.check()


def test_streamed_round_trip_multipart(store: Any) -> None:
    """40 MiB through put_stream/open: MinIO takes it as a multipart upload (8 MiB parts)."""
    size = 40 * 1024 * 1024 + 123
    block = os.urandom(1024 * 1024)
    data = (block * 41)[:size]
    info = store.put_stream("big/object.bin", io.BytesIO(data), size)
    assert (info.size, info.sha256) == (size, hashlib.sha256(data).hexdigest())
    reader = store.open("big/object.bin")
    try:
        assert reader.size == size
        h = hashlib.sha256()
        biggest = 0
        for chunk in reader:
            h.update(chunk)
            biggest = max(biggest, len(chunk))
    finally:
        reader.close()
    assert h.hexdigest() == info.sha256
    assert biggest <= 1024 * 1024  # read in chunks, never the whole object at once


def test_short_stream_leaves_nothing(store: Any) -> None:
    with pytest.raises((StorageUnavailableError, OSError)):
        store.put_stream("short", io.BytesIO(b"x" * 100), 1000)
    assert list(store.list()) == []


def test_retention_refuses_delete_until_bypassed(store: Any) -> None:
    until = datetime.now(UTC) + timedelta(days=1)
    store.put("kept", b"record", retain_until=until)
    status = store.lock_status("kept")
    assert status.retain_until is not None
    assert abs((status.retain_until - until).total_seconds()) < 2
    assert status.locked(datetime.now(UTC))
    with pytest.raises(ObjectLocked):
        store.delete("kept")
    assert store.get("kept") == b"record"
    # Governance mode: a privileged caller (the reconciler removing an orphan) may bypass it.
    store.delete("kept", bypass_retention=True)
    assert not store.exists("kept")
    assert list(store.list()) == []


def test_legal_hold_blocks_even_bypass(store: Any) -> None:
    store.put("held", b"evidence")
    assert not store.lock_status("held").locked(datetime.now(UTC))
    store.set_legal_hold("held", True)
    assert store.lock_status("held").legal_hold
    with pytest.raises(ObjectLocked):
        store.delete("held", bypass_retention=True)
    store.set_legal_hold("held", False)
    assert not store.lock_status("held").legal_hold
    store.delete("held")
    assert not store.exists("held")


def test_lock_status_of_missing_object(store: Any) -> None:
    with pytest.raises(ObjectNotFound):
        store.lock_status("nothing-here")


@pytest.mark.parametrize("mib", [3, 16, 21])  # one PUT; exactly two parts; parts and a rest
def test_unknown_length_stream_through_a_pipe(store: Any, mib: int) -> None:
    """The producer writes chunks while the store reads them in another thread (the API's
    pipelined upload); the length is unknown until the end (MinIO: multipart)."""
    import threading

    from storage.base import ChunkPipe

    pipe = ChunkPipe(max_chunks=2)
    block = os.urandom(1024 * 1024)
    expected = hashlib.sha256()
    result: dict[str, Any] = {}

    def consume() -> None:
        result["info"] = store.put_stream("piped/object", pipe, None)

    thread = threading.Thread(target=consume)
    thread.start()
    for i in range(mib):
        chunk = block[i:] + block[:i]
        expected.update(chunk)
        pipe.put(chunk)
    pipe.close()
    thread.join(60)
    assert result["info"].sha256 == expected.hexdigest()
    assert result["info"].size == mib * 1024 * 1024
    assert hashlib.sha256(store.get("piped/object")).hexdigest() == expected.hexdigest()


class ClientGone(Exception):
    pass


def test_aborted_pipe_leaves_nothing(store: Any) -> None:
    import threading

    from storage.base import ChunkPipe

    pipe = ChunkPipe(max_chunks=2)
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            store.put_stream("piped/aborted", pipe, None)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    thread = threading.Thread(target=consume)
    thread.start()
    pipe.put(os.urandom(1024 * 1024))
    pipe.abort(ClientGone("client went away"))
    thread.join(60)
    assert errors and isinstance(errors[0], ClientGone)
    assert list(store.list()) == []


def test_retention_set_after_writing(store: Any) -> None:
    store.put("later", b"screened first, then locked")
    until = datetime.now(UTC) + timedelta(days=2)
    store.set_retention("later", until)
    assert store.lock_status("later").retain_until is not None
    with pytest.raises(ObjectLocked):
        store.delete("later")
    with pytest.raises(ObjectLocked):  # governance retention is extended, never shortened
        store.set_retention("later", until - timedelta(days=1))
    store.delete("later", bypass_retention=True)
