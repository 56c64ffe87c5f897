"""Remote signing (CSC) against a hostile provider (red team 21b R21B-6): a throw-away HTTP
server on a loopback port that answers what a broken or compromised provider could answer, and
the service's own CSC client as the signing flow and ``key add`` call it. Every odd answer is
the provider being unavailable (``remote_unavailable``: 503 ``REMOTE_SIGNING_UNAVAILABLE``),
never an unmapped exception (500), and no answer costs more than the configured timeout."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signing_service.signing.keys.base import KeySourceError
from signing_service.signing.keys.csc import (
    MAX_ANSWER_BYTES,
    CscClient,
    CscCredential,
    CscSigner,
    fetch_credential,
)

Answer = Callable[[http.server.BaseHTTPRequestHandler], None]


class Provider:
    """A provider on 127.0.0.1 whose every POST is answered by ``answer``."""

    def __init__(self, protocol: str = "HTTP/1.0") -> None:
        self.answer: Answer = lambda handler: None
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = protocol

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                # The client hanging up is what the tests expect of it.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    provider.answer(self)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/csc/v2"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send(body: bytes, *, length: int | None = None) -> Answer:
    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body) if length is None else length))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def drip(body: bytes, every: float) -> Answer:
    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for byte in body:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(every)

    return answer


def flood(total: int) -> Answer:
    """A body without Content-Length (HTTP/1.0: the connection's end ends it), sent fast."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        handler.wfile.write(b'{"SAD": "')
        block = b"A" * 65536
        for _ in range(total // len(block)):
            handler.wfile.write(block)
        handler.wfile.write(b'"}')

    return answer


@pytest.fixture(params=["HTTP/1.0", "HTTP/1.1"])
def provider(request: pytest.FixtureRequest) -> Iterator[Provider]:
    server = Provider(request.param)
    yield server
    server.close()


@pytest.fixture(scope="module")
def officer_cert() -> asn1_x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Trần Thị Bình")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def credential(provider: Provider, timeout: float = 5.0) -> CscCredential:
    return CscCredential(
        base_url=provider.url, credential_id="C1", token=lambda: "t", timeout=timeout
    )


def sign(provider: Provider, cert: asn1_x509.Certificate, timeout: float = 5.0) -> bytes:
    signer = CscSigner(CscClient(credential(provider, timeout)), cert, []).authorized("123456")
    return asyncio.run(signer.async_sign_raw(b"du lieu", "sha256"))


@pytest.mark.parametrize("body", [b"[]", b'["C1"]', b'"C1"', b"42", b"null", b"true"])
def test_a_json_answer_that_is_not_an_object_is_the_provider_unavailable(
    provider: Provider, officer_cert: asn1_x509.Certificate, body: bytes
) -> None:
    provider.answer = send(body)
    for call in (
        lambda: fetch_credential(credential(provider)),
        lambda: sign(provider, officer_cert),
    ):
        with pytest.raises(KeySourceError) as refused:
            call()
        assert refused.value.reason == "remote_unavailable"


def test_a_dripping_provider_costs_at_most_the_timeout(
    provider: Provider, officer_cert: asn1_x509.Certificate
) -> None:
    """One byte every 0.25 s of a 44-byte answer would take 11 s; the timeout is 1 s (the
    red team measured 164 s for a 3 s timeout: the timeout bounded each read, not the call)."""
    provider.answer = drip(b'{"SAD": "x"' + b" " * 32 + b"}", 0.25)
    started = time.monotonic()
    with pytest.raises(KeySourceError) as refused:
        sign(provider, officer_cert, timeout=1.0)
    assert refused.value.reason == "remote_unavailable"
    assert time.monotonic() - started < 1.6


def test_a_huge_declared_answer_is_refused_unread(provider: Provider) -> None:
    provider.answer = send(b'{"credentialIDs": ["C1"]}', length=MAX_ANSWER_BYTES + 1)
    with pytest.raises(KeySourceError) as refused:
        fetch_credential(credential(provider))
    assert refused.value.reason == "remote_unavailable"
    assert str(MAX_ANSWER_BYTES + 1) in str(refused.value)


def test_a_huge_answer_without_length_is_cut_off(
    officer_cert: asn1_x509.Certificate,
) -> None:
    server = Provider("HTTP/1.0")
    try:
        server.answer = flood(16 * MAX_ANSWER_BYTES)
        with pytest.raises(KeySourceError) as refused:
            sign(server, officer_cert)
        assert refused.value.reason == "remote_unavailable"
        assert f"more than {MAX_ANSWER_BYTES} bytes" in str(refused.value)
    finally:
        server.close()


def test_an_ordinary_answer_still_reads(provider: Provider) -> None:
    """The bounds cut off nothing a provider normally sends (a list of credentials)."""
    provider.answer = send(b'{"credentialIDs": ["C2"]}')
    with pytest.raises(KeySourceError) as refused:
        fetch_credential(credential(provider))
    assert refused.value.reason == "key_not_found"  # the answer was read and understood
