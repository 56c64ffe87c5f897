"""Remote signing through a Cloud Signature Consortium API v2 provider (VNPT SmartCA, Viettel
MySign and others are shaped like it). The service is the *signature application*:

- ``credentials/list`` and ``credentials/info`` once per credential: it must be one of the
  service's credentials at the provider, and its certificate chain is read from there (and must
  be the one registered);
- per signature: ``credentials/authorize`` with the officer's authorisation (PIN/OTP) passed
  through from the request and the hash to be signed (SCAL2: the SAD is bound to that hash),
  then ``signatures/signHash``; the value returned is checked against the certificate.

Providers are configured by the operator (``SIGNING_SERVICE_CSC_PROVIDERS``: a name, the base
URL and where the service's own access token comes from); a registered key names a provider and
a credential ID. Nothing a tenant writes chooses the URL or the token (issue 9: a tenant-written
``csc:`` URI made the server read any file or variable and send it to any URL). The officer's
authorisation never appears in URLs or logs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from asn1crypto import x509
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing_service.signing.fastcms import FastCmsMixin
from signing_service.signing.keys.base import KeySourceError, KeySpec, LoadedKey
from signing_service.signing.rawsig import raw_signature_valid

HASH_OIDS = {
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
SIGN_ALGO_OIDS = {
    ("rsa", "sha256"): "1.2.840.113549.1.1.11",
    ("rsa", "sha384"): "1.2.840.113549.1.1.12",
    ("rsa", "sha512"): "1.2.840.113549.1.1.13",
    ("ec", "sha256"): "1.2.840.10045.4.3.2",
    ("ec", "sha384"): "1.2.840.10045.4.3.3",
}


# The largest answer read from a provider: a certificate chain, a SAD, a few signatures fit many
# times over. More is cut off (remote_unavailable), never held in memory.
MAX_ANSWER_BYTES = 1024 * 1024
_READ_SIZE = 64 * 1024


def _unavailable(reason: str) -> KeySourceError:
    return KeySourceError(f"remote signing provider {reason}", "remote_unavailable")


def _socket_of(raw: Any) -> socket.socket | None:
    """The socket an urllib3 response reads from: its connection's, or (the connection already
    let go of it, as for an answer that closes the connection) the one behind its file."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is None:
        buffered = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(buffered, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _read_answer(response: requests.Response, deadline: float) -> bytes:
    """The body of ``response``, read as it arrives until ``deadline`` (``time.monotonic()``)
    and at most :data:`MAX_ANSWER_BYTES`. Each read waits for at most the time left: a provider
    that sends one byte every few seconds is cut off at the deadline, not when it is done."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
        raise _unavailable(f"answered {declared} bytes (more than {MAX_ANSWER_BYTES})")
    raw = response.raw
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _unavailable("did not finish its answer in time")
        sock = _socket_of(raw)
        if sock is not None:
            sock.settimeout(left)
        # read1: one receive at most, so the time left bounds it (read(n) waits for n bytes).
        chunk = raw.read1(_READ_SIZE, decode_content=False)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise _unavailable(f"answered more than {MAX_ANSWER_BYTES} bytes")
        chunks.append(chunk)


class RemoteAuthorizationError(KeySourceError):
    """The provider refused the officer's authorisation (wrong PIN/OTP, locked credential)."""


@dataclass(frozen=True)
class CscCredential:
    """One credential at a configured provider: ``base_url`` (from the operator's
    configuration), ``credential_id``, and ``token``: a callback returning the service's own
    bearer token at the provider (read from where the operator's configuration says)."""

    base_url: str
    credential_id: str
    token: Callable[[], str]
    timeout: float = 10.0


class CscClient:
    def __init__(self, credential: CscCredential) -> None:
        self.credential = credential
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def call(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``endpoint`` and return the JSON object answered. The whole call
        (connecting, the answer's headers and body) is bounded by the credential's timeout and
        the body by :data:`MAX_ANSWER_BYTES`; anything but a JSON object is the provider being
        unavailable (``remote_unavailable``), as are errors, timeouts and oversized answers."""
        timeout = self.credential.timeout
        deadline = time.monotonic() + timeout
        try:
            response = self._session().post(
                f"{self.credential.base_url}/{endpoint}",
                json=body,
                # total: the connection and each read of the headers share one budget.
                timeout=urllib3.Timeout(total=timeout),
                headers={
                    "Authorization": f"Bearer {self.credential.token()}",
                    "Accept-Encoding": "identity",  # what is counted is what is read
                },
                stream=True,
            )
        except requests.RequestException as e:
            raise _unavailable(f"unreachable: {type(e).__name__}") from None
        with response:
            if response.status_code in (400, 401, 403) and endpoint == "credentials/authorize":
                raise RemoteAuthorizationError(
                    "the provider refused the authorisation", "remote_authorization_failed"
                )
            if response.status_code >= 400:
                raise _unavailable(f"answered {response.status_code}")
            try:
                content = _read_answer(response, deadline)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
                raise _unavailable(f"broke off its answer: {type(e).__name__}") from None
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            raise _unavailable("answered garbage") from None
        if not isinstance(data, dict):
            raise _unavailable(f"answered a JSON {type(data).__name__}, not an object")
        return data


class CscSigner(FastCmsMixin, Signer):
    def __init__(
        self,
        client: CscClient,
        signing_cert: x509.Certificate,
        chain: list[x509.Certificate],
        authorization: str | None = None,
    ) -> None:
        super().__init__(
            signing_cert=signing_cert,
            cert_registry=SimpleCertificateStore.from_certs(chain),
        )
        self.client = client
        self._authorization = authorization

    def authorized(self, authorization: str | None) -> CscSigner:
        """A signer for one request, carrying the officer's authorisation."""
        signer = CscSigner(self.client, self.signing_cert, list(self.cert_registry), authorization)
        signer._templates = self._templates  # the CMS layout does not depend on the request
        return signer

    async def async_sign_raw(
        self, data: bytes, digest_algorithm: str, dry_run: bool = False
    ) -> bytes:
        if dry_run:
            return bytes(512)
        if not self._authorization:
            raise RemoteAuthorizationError(
                "the officer's authorisation is required", "remote_authorization_required"
            )
        algorithm = digest_algorithm.lower()
        digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
        credential = self.client.credential.credential_id
        authorized = self.client.call(
            "credentials/authorize",
            {
                "credentialID": credential,
                "numSignatures": 1,
                "hashes": [digest],
                "hashAlgorithmOID": HASH_OIDS[algorithm],
                "PIN": self._authorization,
            },
        )
        assert self.signing_cert is not None
        key_algo = self.signing_cert.public_key.algorithm
        sign_algo = SIGN_ALGO_OIDS.get((key_algo, algorithm))
        if sign_algo is None or not isinstance(authorized.get("SAD"), str):
            raise KeySourceError("remote signing provider answered garbage", "remote_unavailable")
        signed = self.client.call(
            "signatures/signHash",
            {
                "credentialID": credential,
                "SAD": authorized["SAD"],
                "hashes": [digest],
                "hashAlgorithmOID": HASH_OIDS[algorithm],
                "signAlgo": sign_algo,
            },
        )
        try:
            signature = base64.b64decode(signed["signatures"][0], validate=True)
        except (KeyError, IndexError, ValueError, TypeError):
            raise KeySourceError(
                "remote signing provider answered garbage", "remote_unavailable"
            ) from None
        # A provider that signed with another key (a mix-up of credentials) must not put a
        # signature under this certificate into an agency's document.
        if not raw_signature_valid(self.signing_cert, data, signature, algorithm):
            raise KeySourceError(
                "the provider's signature does not match the certificate", "certificate_mismatch"
            )
        return signature


def fetch_credential(credential: CscCredential) -> tuple[x509.Certificate, ...]:
    """The credential's certificate and chain as the provider lists them (``credentials/list``
    must name it; ``credentials/info`` gives the chain). Raises :class:`KeySourceError`
    ``key_not_found`` for a credential the provider does not list."""
    client = CscClient(credential)
    listed = client.call("credentials/list", {"credentialInfo": False})
    ids = listed.get("credentialIDs")
    if not isinstance(ids, list) or credential.credential_id not in ids:
        raise KeySourceError("the provider does not list this credential", "key_not_found")
    info = client.call(
        "credentials/info", {"credentialID": credential.credential_id, "certificates": "chain"}
    )
    try:
        certs = tuple(
            x509.Certificate.load(base64.b64decode(c)) for c in info["cert"]["certificates"]
        )
        certs[0].native  # noqa: B018 - force a full parse
    except (KeyError, IndexError, ValueError, TypeError):
        raise KeySourceError(
            "the provider's credential has no readable certificate", "remote_unavailable"
        ) from None
    return certs


def open_key(spec: KeySpec) -> LoadedKey:
    """Open a registered remote credential: ``params`` ``url`` (the configured provider's base
    URL), ``credential``; the secret is the service's access token at the provider. The
    provider's certificate must still be the registered one."""
    token = spec.read_secret
    credential = CscCredential(
        base_url=spec.params["url"],
        credential_id=spec.params["credential"],
        token=lambda: token().decode(),
        timeout=float(spec.params.get("timeout", "10")),
    )
    certs = fetch_credential(credential)
    if certs[0].dump() != spec.certificate.dump():
        raise KeySourceError(
            "the provider's certificate is not the registered one", "certificate_mismatch"
        )
    signer = CscSigner(CscClient(credential), spec.certificate, list(spec.chain))
    return LoadedKey(signer=signer, signing_cert=spec.certificate, chain=spec.chain)
