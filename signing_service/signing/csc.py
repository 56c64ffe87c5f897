"""Remote signing through a Cloud Signature Consortium API v2 provider (VNPT SmartCA, Viettel
MySign and others are shaped like it). The service is the *signature application*:

- ``credentials/list`` and ``credentials/info`` once per credential: it must be one of the
  service's credentials at the provider, and its certificate chain is read from there;
- per signature: ``credentials/authorize`` with the officer's authorisation (PIN/OTP) passed
  through from the request and the hash to be signed (SCAL2: the SAD is bound to that hash),
  then ``signatures/signHash``.

URI: ``csc:https://provider/csc/v2?credential=<id>&token-source=env:NAME`` where the token is
the service's own bearer token at the provider (OAuth2 access token or API key). The officer's
authorisation never appears in URIs or logs.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
from asn1crypto import x509
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing_service.signing.fastcms import FastCmsMixin
from signing_service.signing.keys import KeySourceError, LoadedKey

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


class RemoteAuthorizationError(KeySourceError):
    """The provider refused the officer's authorisation (wrong PIN/OTP, locked credential)."""


@dataclass(frozen=True)
class CscCredential:
    base_url: str
    credential_id: str
    token_source: str
    timeout: float = 10.0

    @classmethod
    def parse(cls, uri: str) -> CscCredential:
        if not uri.startswith("csc:"):
            raise KeySourceError("not a csc: URI")
        parsed = urlparse(uri[len("csc:") :])
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        if parsed.scheme not in ("http", "https") or not query.get("credential"):
            raise KeySourceError("csc URI needs an http(s) base URL and credential=")
        base = f"{parsed.scheme}://{parsed.netloc}{parsed.path}".rstrip("/")
        return cls(base, query["credential"], query.get("token-source", ""))

    def token(self) -> str:
        kind, _, where = self.token_source.partition(":")
        if kind == "env" and where in os.environ:
            return os.environ[where]
        if kind == "file":
            try:
                return Path(where).read_text().strip()
            except OSError:
                raise KeySourceError("cannot read the provider token file") from None
        raise KeySourceError("no provider token (token-source=env:NAME or file:PATH)")


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
        try:
            response = self._session().post(
                f"{self.credential.base_url}/{endpoint}",
                json=body,
                timeout=self.credential.timeout,
                headers={"Authorization": f"Bearer {self.credential.token()}"},
            )
        except requests.RequestException as e:
            raise KeySourceError(
                f"remote signing provider unreachable: {type(e).__name__}", "remote_unavailable"
            ) from None
        if response.status_code in (400, 401, 403) and endpoint == "credentials/authorize":
            raise RemoteAuthorizationError(
                "the provider refused the authorisation", "remote_authorization_failed"
            )
        if response.status_code >= 400:
            raise KeySourceError(
                f"remote signing provider answered {response.status_code}", "remote_unavailable"
            )
        try:
            data: dict[str, Any] = response.json()
        except ValueError:
            raise KeySourceError(
                "remote signing provider answered garbage", "remote_unavailable"
            ) from None
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
        key_algo = self.signing_cert.public_key.algorithm
        signed = self.client.call(
            "signatures/signHash",
            {
                "credentialID": credential,
                "SAD": authorized["SAD"],
                "hashes": [digest],
                "hashAlgorithmOID": HASH_OIDS[algorithm],
                "signAlgo": SIGN_ALGO_OIDS[(key_algo, algorithm)],
            },
        )
        try:
            return base64.b64decode(signed["signatures"][0])
        except (KeyError, IndexError, ValueError, TypeError):
            raise KeySourceError(
                "remote signing provider answered garbage", "remote_unavailable"
            ) from None


def load_csc_key(uri: str) -> LoadedKey:
    credential = CscCredential.parse(uri)
    client = CscClient(credential)
    listed = client.call("credentials/list", {"credentialInfo": False})
    if credential.credential_id not in (listed.get("credentialIDs") or []):
        raise KeySourceError("the provider does not list this credential", "key_not_found")
    info = client.call(
        "credentials/info", {"credentialID": credential.credential_id, "certificates": "chain"}
    )
    try:
        certs = [x509.Certificate.load(base64.b64decode(c)) for c in info["cert"]["certificates"]]
        certs[0].native  # noqa: B018 - force a full parse
    except (KeyError, IndexError, ValueError, TypeError):
        raise KeySourceError(
            "the provider's credential has no readable certificate", "remote_unavailable"
        ) from None
    signer = CscSigner(client, certs[0], certs[1:])
    return LoadedKey(signer=signer, signing_cert=certs[0], chain=tuple(certs[1:]))


def with_authorization(key: LoadedKey, authorization: str | None) -> LoadedKey:
    if not isinstance(key.signer, CscSigner):
        return key
    return replace(key, signer=key.signer.authorized(authorization))
