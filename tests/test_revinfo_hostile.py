"""Hostile revocation answers: a CRL or OCSP response nested thousands deep, served where a
certificate's distribution point or responder says (by its CA, or by anyone on the path of a
plain-HTTP fetch). asn1crypto parses recursively and keeps a copy of each value's contents per
level: such an answer cost a RecursionError (a 500 before every signature with that CA's keys,
a traceback from ``key add``) and memory growing with the square of the depth (red team 15,
F4/F8), and a genuine document verified as "crafted to attack" for an hour (F5). The fetchers
now measure an answer's shape before anything parses it and treat one they cannot use as an
unreachable source: revocation unknown, remembered for ``failure_age`` only."""

from __future__ import annotations

import asyncio
import http.server
import resource
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from pyhanko_certvalidator.authority import CertTrustAnchor
from pyhanko_certvalidator.errors import CRLFetchError, OCSPFetchError

from signing_service._asn1 import MAX_DER_DEPTH, check_der_shape
from signing_service.verification.revinfo_cache import CachingFetcherBackend, RevocationCache
from tests.support.revocation_sources import cert_with_revocation_sources
from tests.test_revinfo_shared_parse import _crl_der, _ocsp_der


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + n.to_bytes(size, "big") + content


def _nested(depth: int) -> bytes:
    value = b"\x05\x00"
    for _ in range(depth):
        value = _tlv(0x30, value)
    return value


def _deep_crl(depth: int) -> bytes:
    """A CRL (a real one's TBS and signature) whose signature algorithm's parameters (ASN.1
    ANY, parsed by asn1crypto on access) nest ``depth`` SEQUENCEs deep."""
    real = asn1_crl.CertificateList.load(_crl_der(3))
    oid = real["signature_algorithm"]["algorithm"].dump()
    algorithm = _tlv(0x30, oid + _nested(depth))
    return _tlv(0x30, real["tbs_cert_list"].dump() + algorithm + real["signature"].dump())


class _Server(http.server.ThreadingHTTPServer):
    answers: dict[str, bytes]


class _Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = self.server.answers.get(self.path.split("?")[0], b"")  # type: ignore[attr-defined]
        self.send_response(200 if body else 404)
        kind = "ocsp-response" if self.path.startswith("/ocsp") else "pkix-crl"
        self.send_header("Content-Type", f"application/{kind}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def answers() -> Iterator[tuple[str, dict[str, bytes]]]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.answers = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.answers
    finally:
        server.shutdown()
        server.server_close()


def _cert(base: str) -> asn1_x509.Certificate:
    return cert_with_revocation_sources(f"{base}/ca.crl", f"{base}/ocsp", "CA có CRL độc hại")


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_deep_crl_is_an_unreachable_source_not_a_crash(
    answers: tuple[str, dict[str, bytes]],
) -> None:
    base, served = answers
    served["/ca.crl"] = _deep_crl(20_000)  # ~80 KB
    cert = _cert(base)
    cache = RevocationCache()
    fetchers = CachingFetcherBackend(cache, per_request_timeout=5).get_fetchers()
    rss = _max_rss_mb()
    began = time.monotonic()
    with pytest.raises(CRLFetchError) as caught:
        asyncio.run(fetchers.crl_fetcher.fetch(cert))
    assert "nested deeper" in str(caught.value.__cause__), caught.value
    assert time.monotonic() - began < 5
    assert _max_rss_mb() - rss < 100  # it was ~0.8 GB per fetch
    # Remembered as a failure for failure_age, not kept as an answer for max_age.
    entry = cache._entries[("crl", f"{base}/ca.crl")]
    assert isinstance(entry.value, CRLFetchError)
    assert entry.expires - time.monotonic() <= cache.failure_age
    # The same CRL nested as real ones are is used.
    served["/ca.crl"] = _crl_der(50)
    fresh = CachingFetcherBackend(RevocationCache(), per_request_timeout=5).get_fetchers()
    (fetched,) = asyncio.run(fresh.crl_fetcher.fetch(cert))
    assert len(fetched["tbs_cert_list"]["revoked_certificates"]) == 50


def test_a_deep_ocsp_response_is_refused_as_unusable(
    answers: tuple[str, dict[str, bytes]],
) -> None:
    base, served = answers
    real = _ocsp_der()
    # The OCSP response's responseBytes carry a BasicOCSPResponse whose content is replaced by
    # 20,000 nested SEQUENCEs (parsed by asn1crypto as the response on access).
    status = real[2:5] if real[1] < 0x80 else real[4:7]
    served["/ocsp"] = _tlv(
        0x30,
        status
        + _tlv(
            0xA0,
            _tlv(
                0x30, _tlv(0x06, bytes.fromhex("2b0601050507300101")) + _tlv(0x04, _nested(20_000))
            ),
        ),
    )
    cert = _cert(base)
    # A generous bound: on a loaded machine (the full suite, -n 2) the 2 × 5 s exchange bound
    # fired first and the refusal named the time, not the depth this test is about.
    fetchers = CachingFetcherBackend(RevocationCache(), per_request_timeout=30).get_fetchers()
    with pytest.raises(OCSPFetchError) as caught:
        asyncio.run(fetchers.ocsp_fetcher.fetch(cert, CertTrustAnchor(cert).authority))
    assert "nested deeper" in str(caught.value.__cause__), caught.value


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x30", "malformed"),
        (b"\x30\x05\x02\x01", "malformed"),
        (b"\x30\x80\x00\x00", "malformed"),
        (b"\x02\x01\x01\x00", "after the value"),
        (_nested(MAX_DER_DEPTH + 1), "nested deeper"),
        (_tlv(0x04, _nested(MAX_DER_DEPTH + 1)), "nested deeper"),  # inside an octet string
        # asn1crypto ignores what follows the first value in an octet string (red team 15b R2)
        (_tlv(0x04, _nested(MAX_DER_DEPTH + 1) + b"\x00"), "nested deeper"),
        (_tlv(0x03, b"\x00" + _nested(MAX_DER_DEPTH + 1) + b"\xff\xff"), "nested deeper"),
    ],
)
def test_der_shape_refuses(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_der_shape(data)


def test_der_shape_accepts_real_answers() -> None:
    for der in (_crl_der(500), _ocsp_der(), _nested(MAX_DER_DEPTH)):
        check_der_shape(der)
    # Random bytes in a bit string that happen to start like a constructed value (a
    # signature): measured as far as they read, never refused for being malformed.
    check_der_shape(_tlv(0x30, _tlv(0x03, b"\x00\x30\x7f" + bytes(range(40)))))


class _Drip(http.server.BaseHTTPRequestHandler):
    """Announces 100 KB and sends a byte every 0.3 s."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/pkix-crl")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b"0")
                self.wfile.flush()
                time.sleep(0.3)
        except OSError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


def test_a_dripping_crl_server_is_given_up_on_in_bounded_time() -> None:
    """requests' timeout is per read: a byte every two seconds held a signing thread for
    minutes (red team 15b, R3). The whole exchange is bounded (2 × the per-request timeout)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        cert = _cert(base)
        fetchers = CachingFetcherBackend(RevocationCache(), per_request_timeout=1).get_fetchers()
        began = time.monotonic()
        with pytest.raises(CRLFetchError) as caught:
            asyncio.run(fetchers.crl_fetcher.fetch(cert))
        assert time.monotonic() - began < 4
        assert "took too long" in str(caught.value.__cause__)
    finally:
        server.shutdown()
        server.server_close()


def test_an_endless_or_pem_crl(answers: tuple[str, dict[str, bytes]]) -> None:
    """A CRL larger than the bound is refused while it is read; a PEM-armoured one (which
    certvalidator accepts) is measured inside its armour and used."""
    from asn1crypto import pem

    from signing_service.verification import revinfo_cache

    base, served = answers
    cert = _cert(base)
    served["/ca.crl"] = pem.armor("X509 CRL", _crl_der(20))
    (fetched,) = asyncio.run(
        CachingFetcherBackend(RevocationCache(), per_request_timeout=5)
        .get_fetchers()
        .crl_fetcher.fetch(cert)
    )
    assert len(fetched["tbs_cert_list"]["revoked_certificates"]) == 20
    served["/ca.crl"] = _crl_der(20_000)  # ~700 KB
    fetcher = CachingFetcherBackend(RevocationCache(), per_request_timeout=5).get_fetchers()
    fetcher.crl_fetcher.max_bytes = 100_000  # type: ignore[attr-defined]
    with pytest.raises(CRLFetchError) as caught:
        asyncio.run(fetcher.crl_fetcher.fetch(cert))
    assert "larger than 100000 bytes" in str(caught.value.__cause__)
    assert revinfo_cache.MAX_CRL_BYTES >= 16 * 1024 * 1024
