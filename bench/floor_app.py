"""The HTTP floor of a signing request, for `make bench` (not part of the service).

A bare FastAPI app under the same server (uvicorn, one worker) that receives the bench's
1 MB multipart body (``/floor``) or the same PDF as a raw ``application/pdf`` body with the
fields in the query string (``/floor/raw``, the service's POST /v1/signatures/raw) and, in
``store`` mode, does the least any signing API must do with it:
SHA-256 of the bytes, one fsync'd file written atomically (rename + directory fsync, page cache
dropped as storage/filesystem.py does), one SQLite row committed (WAL, synchronous=NORMAL, as
the service's SQLite). No authentication, no signing, no audit. Its CPU time per request is a
lower bound on what the API adds to the signing core, so it bounds the ratio "API per
CPU-second ÷ signing core per CPU-second" from above (bench/run.py prints the bound).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

app = FastAPI()
_DIR = Path(os.environ.get("BENCH_FLOOR_DIR", tempfile.gettempdir())) / "bench-floor"
_DIR.mkdir(parents=True, exist_ok=True)
_MODE = os.environ.get("BENCH_FLOOR_MODE", "store")
_db = sqlite3.connect(_DIR / "floor.sqlite", check_same_thread=False, isolation_level=None)
_db.execute("pragma journal_mode=wal")
_db.execute("pragma synchronous=normal")
_db.execute("create table if not exists t (id integer primary key, sha256 text, size integer)")
_lock = threading.Lock()


@app.post("/floor")
def floor(
    file: Annotated[UploadFile, File()],
    profile: Annotated[str, Form()],
    level: Annotated[str, Form()],
) -> Response:
    data = file.file.read()
    _store(data)
    body = json.dumps({"profile": profile, "level": level, "size": len(data)})
    return Response(body, media_type="application/json")


@app.post("/floor/raw")
async def floor_raw(request: Request, profile: str, level: str) -> Response:
    data = await request.body()
    # In a worker thread, as the multipart endpoint (a plain def) does its work.
    await run_in_threadpool(_store, data)
    body = json.dumps({"profile": profile, "level": level, "size": len(data)})
    return Response(body, media_type="application/json")


def _store(data: bytes) -> None:
    if _MODE == "store":
        digest = hashlib.sha256(data).hexdigest()
        fd, tmp = tempfile.mkstemp(dir=_DIR, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        os.replace(tmp, _DIR / "object")
        dir_fd = os.open(_DIR, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        with _lock:
            _db.execute("begin immediate")
            _db.execute("insert into t (sha256, size) values (?, ?)", (digest, len(data)))
            _db.execute("commit")
