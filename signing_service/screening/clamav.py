"""ClamAV scanning through clamd's INSTREAM command (Unix socket or TCP on loopback).

When a clamd socket is configured, every upload is scanned before it is accepted. clamd being
down is not "clean": the caller gets :class:`ClamdUnavailable` and refuses the upload.
"""

from __future__ import annotations

import io
import socket
import struct
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 64 * 1024


class ClamdUnavailable(Exception):
    pass


@dataclass(frozen=True)
class ScanResult:
    infected: bool
    signature: str | None = None


def _connect(address: str, timeout: float) -> socket.socket:
    try:
        if address.startswith("tcp://"):
            host, _, port = address.removeprefix("tcp://").rpartition(":")
            return socket.create_connection((host, int(port)), timeout=timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address.removeprefix("unix://"))
        return sock
    except (OSError, ValueError) as e:
        raise ClamdUnavailable(f"clamd unreachable: {type(e).__name__}") from None


def scan(address: str, data: bytes, timeout: float = 30.0) -> ScanResult:
    return scan_file(address, io.BytesIO(data), timeout)


def scan_file(address: str, f: BinaryIO, timeout: float = 30.0) -> ScanResult:
    """Stream ``f`` to clamd in chunks (clamd's StreamMaxLength bounds what it accepts; a
    longer stream is an error, not "clean")."""
    sock = _connect(address, timeout)
    try:
        sock.sendall(b"zINSTREAM\0")
        while chunk := f.read(CHUNK):
            sock.sendall(struct.pack(">I", len(chunk)) + chunk)
        sock.sendall(struct.pack(">I", 0))
        reply = b""
        while not reply.endswith(b"\0"):
            part = sock.recv(4096)
            if not part:
                break
            reply += part
    except OSError as e:
        raise ClamdUnavailable(f"clamd failed: {type(e).__name__}") from None
    finally:
        sock.close()
    text = reply.rstrip(b"\0").decode(errors="replace")
    if text.endswith("OK"):
        return ScanResult(infected=False)
    if text.endswith("FOUND"):
        signature = text.removeprefix("stream:").strip().removesuffix("FOUND").strip()
        return ScanResult(infected=True, signature=signature)
    raise ClamdUnavailable(f"unexpected clamd answer: {text[:100]}")
