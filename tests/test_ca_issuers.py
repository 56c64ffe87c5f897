"""Issuer certificates fetched from AIA caIssuers URLs the operator allows (red team 19, F6).

A CMS that carries only the signer's certificate (many signing tools leave the chain out) was
INDETERMINATE / NO_CERTIFICATE_CHAIN_FOUND unless its issuing CA's certificate was pinned; EU
DSS fetches the issuer from the certificate's caIssuers URL. The service now does too, but only
from URL prefixes the operator lists (SIGNING_SERVICE_CA_ISSUER_URLS): the URLs come from an
uploaded file, and followed freely they would make the service fetch any address.
"""

from __future__ import annotations

import asyncio
import http.server
import io
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError
from pyhanko.sign import signers
from pyhanko_certvalidator import errors as cv_errors
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing_service.pki.dev import DevPki
from signing_service.services.verification_pool import TrustConfig
from signing_service.settings import Settings
from signing_service.trust import TrustStore
from signing_service.verification.revinfo_cache import (
    MAX_ISSUER_CERT_BYTES,
    CachingFetcherBackend,
    RevocationCache,
    issuer_url_allowed,
)
from signing_service.verification.validate import Verifier
from tests.support.pdfs import make_pdf
from tests.test_other_tools import REPO, only_signature, sign, simple_signer, verify


@pytest.mark.parametrize(
    ("url", "prefixes", "allowed"),
    [
        ("http://ca.example.vn/certs/ca.crt", ("http://ca.example.vn/certs/",), True),
        ("HTTP://CA.example.vn:80/certs/ca.crt", ("http://ca.example.vn/certs/",), True),
        ("http://ca.example.vn/certs/ca.crt", ("http://ca.example.vn/certs",), True),
        ("http://ca.example.vn/certsX/ca.crt", ("http://ca.example.vn/certs",), False),
        ("http://ca.example.vn/other/ca.crt", ("http://ca.example.vn/certs/",), False),
        ("http://ca.example.vn/certs/../admin", ("http://ca.example.vn/certs/",), False),
        ("http://ca.example.vn/certs/%2e%2e/admin", ("http://ca.example.vn/certs/",), False),
        ("https://ca.example.vn/certs/ca.crt", ("http://ca.example.vn/certs/",), False),
        ("http://ca.example.vn:8080/certs/ca.crt", ("http://ca.example.vn/certs/",), False),
        ("http://ca.example.vn.evil/certs/ca.crt", ("http://ca.example.vn/certs/",), False),
        ("http://user@ca.example.vn/certs/ca.crt", ("http://ca.example.vn/certs/",), False),
        ("http://ca.example.vn/certs/a b.crt", ("http://ca.example.vn/certs/",), False),
        ("http://ca.example.vn\\@evil/certs/x", ("http://ca.example.vn/certs/",), False),
        # Red team 23c, R23C-6: urlsplit reads the bracketed part as the host, httpx does not.
        ("http://evil.com[v1.ca.vn]/certs/x", ("http://v1.ca.vn/certs/",), False),
        ("ldap://ca.example.vn/certs/ca.crt", ("http://ca.example.vn/certs/",), False),
        ("file:///etc/passwd", ("http://ca.example.vn/certs/",), False),
        ("http://ca.example.vn/certs/ca.crt", (), False),
    ],
)
def test_allowlist_matching(url: str, prefixes: tuple[str, ...], allowed: bool) -> None:
    assert issuer_url_allowed(url, prefixes) is allowed


@pytest.mark.parametrize(
    "value",
    ['["ftp://ca.example.vn/"]', '["http://u:p@ca.example.vn/"]', '["http://ca/x/../"]', '"x"'],
)
def test_setting_refuses_malformed_prefixes(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNING_SERVICE_CA_ISSUER_URLS", value)
    with pytest.raises(ValidationError):
        Settings()


def test_setting_reaches_the_verification_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNING_SERVICE_CA_ISSUER_URLS", '["http://ca.example.vn/certs/"]')
    assert Settings().ca_issuer_urls == ["http://ca.example.vn/certs/"]
    config = TrustConfig(
        manifest=REPO / "certs/trust/anchors.json",
        extra=(),
        dev_root=None,
        dev_intermediates=(),
        fetch_timeout=3,
        ca_issuer_urls=("http://ca.example.vn/certs/",),
    )
    assert config.load().ca_issuer_urls == ("http://ca.example.vn/certs/",)


# --- a document whose CMS carries only the signer's certificate --------------------------


@pytest.fixture(scope="module")
def pki(dev_pki: tuple[DevPki, int]) -> DevPki:
    return dev_pki[0]


@pytest.fixture(scope="module")
def leaf_only(pki: DevPki) -> bytes:
    full = simple_signer(pki)
    signer = signers.SimpleSigner(
        signing_cert=full.signing_cert,
        signing_key=full.signing_key,
        cert_registry=SimpleCertificateStore(),
    )
    signed = sign(pki, make_pdf(), signer=signer)
    from pyhanko.pdf_utils.reader import PdfFileReader

    certs = PdfFileReader(io.BytesIO(signed)).embedded_signatures[0].signed_data["certificates"]
    # The CMS holds the signer's certificate, no intermediate (the TSA token its own).
    assert [c.chosen.subject for c in certs] == [full.signing_cert.subject]
    return signed


def _verifier(pki: DevPki, prefixes: tuple[str, ...]) -> Verifier:
    """The dev root as the only anchor (the dev intermediate is not offered, as a licensed
    CA's intermediate that is not pinned), allowed caIssuers prefixes as given."""
    trust = TrustStore.load(
        REPO / "certs/trust/anchors.json",
        dev_root=pki.root_cert_path,
        fetch_timeout=3,
        ca_issuer_urls=prefixes,
    )
    assert not any(c.subject == pki.cert("interm").subject for c in trust.intermediates)
    return Verifier(trust)


def test_leaf_only_document_passes_with_the_issuer_fetched(pki: DevPki, leaf_only: bytes) -> None:
    report = verify(_verifier(pki, (pki.url_prefix + "/",)), leaf_only)
    sig = only_signature(report)
    assert sig["indication"] == "TOTAL_PASSED", sig
    assert sig["checks"]["trust"]["status"] == "PASSED"


@pytest.mark.parametrize("prefixes", [(), ("http://127.0.0.1:1/",), ("{prefix}/elsewhere/",)])
def test_leaf_only_document_without_an_allowed_url_stays_indeterminate(
    pki: DevPki, leaf_only: bytes, prefixes: tuple[str, ...]
) -> None:
    prefixes = tuple(p.format(prefix=pki.url_prefix) for p in prefixes)
    sig = only_signature(verify(_verifier(pki, prefixes), leaf_only))
    assert sig["indication"] == "INDETERMINATE"
    assert sig["sub_indication"] == "NO_CERTIFICATE_CHAIN_FOUND"


# --- the fetcher against a server that misbehaves ----------------------------------------


class _Server(http.server.BaseHTTPRequestHandler):
    body: bytes = b""
    requested: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requested.append(self.path)
        if self.path == "/certs/moved.crt":
            self.send_response(302)
            self.send_header("Location", "/certs/ca.crt")
            self.end_headers()
            return
        body = self.body if self.path != "/certs/big.crt" else b"\x30\x82" + b"\0" * 100_000
        self.send_response(200)
        self.send_header("Content-Type", "application/pkix-cert")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def issuer_server(pki: DevPki) -> Iterator[tuple[str, list[str]]]:
    handler = type("H", (_Server,), {"body": pki.cert("interm").dump(), "requested": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", handler.requested
    server.shutdown()
    server.server_close()


def _fetch(base: str, path: str, prefixes: tuple[str, ...]) -> list[Any]:
    backend = CachingFetcherBackend(RevocationCache(), 3, ca_issuer_urls=prefixes)
    fetcher = backend.get_fetchers().cert_fetcher
    return list(asyncio.run(fetcher.fetch_certs(base + path, "certificate")))


def test_fetcher_reads_an_allowed_url_once(
    pki: DevPki, issuer_server: tuple[str, list[str]]
) -> None:
    base, requested = issuer_server
    backend = CachingFetcherBackend(RevocationCache(), 3, ca_issuer_urls=(base + "/certs/",))

    async def twice() -> list[Any]:
        first = await backend.get_fetchers().cert_fetcher.fetch_certs(base + "/certs/ca.crt", "c")
        second = await backend.get_fetchers().cert_fetcher.fetch_certs(base + "/certs/ca.crt", "c")
        return [*first, *second]

    certs = asyncio.run(twice())
    assert [c.subject for c in certs] == [pki.cert("interm").subject] * 2
    assert requested == ["/certs/ca.crt"]  # the second from the shared cache


@pytest.mark.parametrize(
    ("path", "reaches_server"),
    [
        ("/private/ca.crt", False),  # not under the allowed prefix: never requested
        ("/certs/moved.crt", True),  # a redirect is not followed
        ("/certs/big.crt", True),  # over MAX_ISSUER_CERT_BYTES
    ],
)
def test_fetcher_refuses(
    issuer_server: tuple[str, list[str]], path: str, reaches_server: bool
) -> None:
    assert MAX_ISSUER_CERT_BYTES < 100_000
    base, requested = issuer_server
    with pytest.raises(cv_errors.CertificateFetchError):
        _fetch(base, path, (base + "/certs/",))
    assert requested == ([path] if reaches_server else [])


def test_the_cli_follows_the_same_allowlist(pki: DevPki, leaf_only: bytes, tmp_path: Any) -> None:
    """New user 23 #5: `signing-service verify` in development (its in-process dev PKI
    backend) ignored SIGNING_SERVICE_CA_ISSUER_URLS: the same leaf-only file had no chain on
    the CLI and a trusted one through the API."""
    from signing_service.pki.dev import in_process_fetcher_backend

    trust = TrustStore.load(
        REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path, fetch_timeout=3
    )
    for prefixes, expected in (((pki.url_prefix + "/",), "TOTAL_PASSED"), ((), "INDETERMINATE")):
        backend = in_process_fetcher_backend(pki, 3, prefixes)
        sig = only_signature(verify(Verifier(trust, fetcher_backend=backend), leaf_only))
        assert sig["indication"] == expected, (prefixes, sig["checks"]["trust"])
