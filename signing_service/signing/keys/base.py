"""What every key source shares: the opened key, the description of a registered key, errors.

A key source never decides *which* key to open: the service layer builds a :class:`KeySpec`
from the key registry (keys the operator registered for one agency) and the operator's
configuration (PKCS#11 modules, remote signing providers), and the source opens exactly that.
Nothing here parses a location, a module path or a secret source written by a tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from asn1crypto import x509
from cryptography.hazmat.primitives import hashes
from pyhanko.sign.signers.pdf_cms import Signer

from signing_service._asn1 import parse_certificates


class KeySourceError(Exception):
    """A registered key cannot be opened or used (unreadable material, token missing, …).

    ``reason``: unavailable (default) | pin_incorrect | token_not_found | key_not_found |
    certificate_mismatch | invalid_reference | unreadable | remote_unavailable |
    remote_authorization_required | remote_authorization_failed; the service maps each to its
    own error code. Messages never carry a secret.
    """

    def __init__(self, message: str, reason: str = "unavailable") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LoadedKey:
    """An opened key: the pyHanko signer, its certificate and the intermediates to embed."""

    signer: Signer
    signing_cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        # An opened key is cached and used by concurrent requests: its certificates are parsed
        # completely here, before any thread shares them (asn1crypto parses lazily, unlocked).
        own = getattr(self.signer, "signing_cert", None)  # pyHanko's copy, if another object
        parse_certificates(
            (self.signing_cert, *self.chain, *([own] if isinstance(own, x509.Certificate) else []))
        )


@dataclass(frozen=True)
class KeySpec:
    """One registered key, as a key source needs it to open the key.

    ``kind``: a key of :data:`signing_service.signing.keys.SOURCES` (``pkcs12``, ``pkcs11``,
    ``csc``). ``key_id``: the registry's identifier (the key cache's key). ``certificate`` and
    ``chain``: what was checked and registered; a source refuses a key whose certificate is
    not this one (``certificate_mismatch``). ``params``: the kind's non-secret parameters,
    resolved from the operator's configuration (e.g. ``module`` = a configured library path,
    ``token``, ``object``, ``id`` hex; ``url``, ``credential``). ``secret``: a callback giving
    the kind's secret (the PKCS#12 material, the PIN, the provider's access token) when the
    key is opened; it is never stored on the spec's repr.
    """

    kind: str
    key_id: str
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    params: Mapping[str, str] = field(default_factory=dict)
    secret: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)

    def read_secret(self) -> bytes:
        """The secret from the callback; :class:`KeySourceError` when the spec has none."""
        if self.secret is None:
            raise KeySourceError(f"{self.kind} key {self.key_id} has no secret")
        return self.secret()


@runtime_checkable
class AuthorizableSigner(Protocol):
    """A signer that needs the signer's own authorisation per request (remote signing)."""

    def authorized(self, authorization: str | None) -> Signer: ...


def with_authorization(key: LoadedKey, authorization: str | None) -> LoadedKey:
    """``key`` carrying the officer's PIN/OTP for one request, for signers that need it (CSC
    remote signing, SCAL2); other keys are returned unchanged."""
    if isinstance(key.signer, AuthorizableSigner):
        return replace(key, signer=key.signer.authorized(authorization))
    return key


def sha256_fingerprint(cert: x509.Certificate) -> str:
    """Upper-case hex SHA-256 of the certificate's DER."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(cert.dump())
    return digest.finalize().hex().upper()


def is_ca_certificate(cert: x509.Certificate) -> bool:
    """True for a CA certificate (basicConstraints cA, or keyCertSign in key usage): such a
    certificate issues certificates and never signs documents as an officer or a seal."""
    constraints = cert.basic_constraints_value
    if constraints is not None and constraints["ca"].native:
        return True
    usages = cert.key_usage_value.native if cert.key_usage_value is not None else set()
    return "key_cert_sign" in (usages or set())
