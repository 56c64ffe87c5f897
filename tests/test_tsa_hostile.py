"""A timestamp server that drips, sends without end or nests its answer thousands deep: the
signing thread gives up in bounded time and memory, and the TSA counts as unavailable
(``TimestampRequestError``: 503 with ``Retry-After`` at the API). Before, requests read the
whole answer with a per-read timeout only, and asn1crypto parsed whatever came (red team 15b:
the TSA client had the shape of the revocation fetches' R3)."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pyhanko.sign.timestamps import TimestampRequestError

from signing_service._asn1 import MAX_DER_DEPTH
from signing_service._async import run_sync
from signing_service.signing.tsa import MAX_TSA_RESPONSE_BYTES, PooledHTTPTimeStamper
from tests.test_revinfo_hostile import _nested, _tlv


class _Tsa(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        mode = self.path.strip("/")
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        if mode == "drip":
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"0")
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                pass
            return
        if mode == "endless":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\x00" * 65536
            try:
                for _ in range(10_000):  # 640 MB if nobody stops reading
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass
            return
        body = _tlv(0x30, _nested(MAX_DER_DEPTH + 50))  # "deep"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def tsa() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Tsa)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("mode", ["drip", "endless", "deep"])
def test_a_hostile_tsa_is_unavailable_in_bounded_time(tsa: str, mode: str) -> None:
    """Dripping or endless: unavailable. Nested past MAX_DER_DEPTH: refused before asn1crypto
    parses it, as an answer that does not parse (ValueError; at the API, 502
    TIMESTAMP_INVALID: tests/test_duties.py)."""
    stamper = PooledHTTPTimeStamper(f"{tsa}/{mode}", timeout=1)
    began = time.monotonic()
    with pytest.raises(ValueError if mode == "deep" else TimestampRequestError):
        run_sync(stamper.async_timestamp(hashlib.sha256(b"x").digest(), "sha256"))
    # 2 × the timeout for the whole answer, plus one read's timeout at most.
    assert time.monotonic() - began < 4, mode
    assert MAX_TSA_RESPONSE_BYTES <= 1024 * 1024
