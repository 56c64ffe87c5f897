"""Object store contract (filesystem backend now; MinIO joins this suite later)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import ObjectNotFound, open_store
from storage.base import InvalidKey


@pytest.fixture(params=["filesystem"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_store(f"file://{tmp_path / 'objects'}")


def test_round_trip_and_digest(store) -> None:  # type: ignore[no-untyped-def]
    info = store.put("agency/2026/11/a.pdf", b"%PDF-1.7 data")
    assert info.size == 13
    assert store.get("agency/2026/11/a.pdf") == b"%PDF-1.7 data"
    assert store.exists("agency/2026/11/a.pdf")
    assert list(store.list("agency/")) == ["agency/2026/11/a.pdf"]


def test_overwrite_is_whole(store) -> None:  # type: ignore[no-untyped-def]
    store.put("k", b"a" * 1000)
    store.put("k", b"b" * 10)
    assert store.get("k") == b"b" * 10
    assert list(store.list()) == ["k"]  # no temporary files left behind


def test_missing_and_delete(store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ObjectNotFound):
        store.get("nope")
    store.put("x", b"1")
    store.delete("x")
    store.delete("x")  # idempotent
    assert not store.exists("x")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", "", "a\\b"])
def test_hostile_keys_refused(store, key: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidKey):
        store.put(key, b"x")
