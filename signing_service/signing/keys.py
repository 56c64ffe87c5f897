"""Key sources behind one abstraction, chosen by URI scheme.

``file:`` (PKCS#12, or PEM key + certificate) now; ``pkcs11:``, ``external:`` and ``csc:`` plug
into the same dispatch table later. Secrets arrive through the caller, never from logs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from asn1crypto import keys as asn1_keys
from asn1crypto import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import pkcs12
from pyhanko.keys import load_cert_from_pemder, load_certs_from_pemder
from pyhanko.sign.general import get_pyca_cryptography_hash
from pyhanko.sign.signers.pdf_cms import Signer, SimpleSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing_service.signing.fastcms import FastCmsMixin


class KeySourceError(Exception):
    """The key behind a profile cannot be loaded (missing file, wrong passphrase, …).

    ``reason``: unavailable (default) | pin_incorrect | token_not_found | key_not_found |
    certificate_mismatch; the service maps each to its own error code.
    """

    def __init__(self, message: str, reason: str = "unavailable") -> None:
        super().__init__(message)
        self.reason = reason


class CachedKeySigner(FastCmsMixin, SimpleSigner):
    """A :class:`SimpleSigner` that parses its private key once, and re-assembles the CMS of
    later signatures from the first one's DER (see :mod:`fastcms`).

    pyHanko's ``SimpleSigner`` re-parses the DER key with ``cryptography`` on every raw
    signature (and it signs twice per document): about 28-50 ms each time on our machines.
    """

    def __init__(
        self, *, private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        self._private_key = private_key

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm).signature_algo
        hash_algo = get_pyca_cryptography_hash(digest_algorithm)
        key = self._private_key
        if mechanism == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, PKCS1v15(), hash_algo)
        if mechanism == "ecdsa" and isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(hash_algo))
        return super().sign_raw(data, digest_algorithm)


@dataclass(frozen=True)
class LoadedKey:
    signer: Signer
    signing_cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]


def _to_asn1(cert: object) -> x509.Certificate:
    from cryptography import x509 as cx509

    assert isinstance(cert, cx509.Certificate)
    return x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _signer(key: object, cert: x509.Certificate, chain: list[x509.Certificate]) -> LoadedKey:
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeySourceError("unsupported private key type")
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = CachedKeySigner(
        private_key=key,
        signing_cert=cert,
        signing_key=asn1_keys.PrivateKeyInfo.load(der),
        cert_registry=SimpleCertificateStore.from_certs(chain),
    )
    return LoadedKey(signer=signer, signing_cert=cert, chain=tuple(chain))


def load_file_key(uri: str, passphrase: bytes | None) -> LoadedKey:
    """``file:/abs/path.p12`` or ``file:/abs/key.pem?cert=/abs/cert.pem&chain=/abs/chain.pem``."""
    parsed = urlparse(uri)
    path = Path(unquote(parsed.path))
    params = parse_qs(parsed.query)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise KeySourceError(f"cannot read key file: {e.strerror}") from None
    try:
        if path.suffix.lower() in (".p12", ".pfx"):
            key, cert, extra = pkcs12.load_key_and_certificates(data, passphrase)
            if key is None or cert is None:
                raise KeySourceError("PKCS#12 file lacks a key or certificate")
            return _signer(key, _to_asn1(cert), [_to_asn1(c) for c in extra])
        key = serialization.load_pem_private_key(data, passphrase)
        if "cert" not in params:
            raise KeySourceError("PEM key source needs ?cert=")
        signing_cert = load_cert_from_pemder(params["cert"][0])
        chain = list(load_certs_from_pemder(params.get("chain", [])))
        return _signer(key, signing_cert, chain)
    except KeySourceError:
        raise
    except (ValueError, TypeError) as e:
        # Wrong passphrase or corrupt file. The message never carries the passphrase.
        raise KeySourceError(f"cannot load key: {type(e).__name__}") from None


def load_pkcs11_key(uri: str, passphrase: bytes | None) -> LoadedKey:
    from signing_service.signing.pkcs11 import load_pkcs11_key as load

    return load(uri)


def load_csc_key(uri: str, passphrase: bytes | None) -> LoadedKey:
    from signing_service.signing.csc import load_csc_key as load

    return load(uri)


Loader = Callable[[str, bytes | None], LoadedKey]
LOADERS: dict[str, Loader] = {
    "file": load_file_key,
    "pkcs11": load_pkcs11_key,
    "csc": load_csc_key,
}


class KeyCache:
    """Loaded keys by URI, so that a key is parsed once per process, not per signature."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, float], LoadedKey] = {}

    def get(self, uri: str, passphrase: bytes | None) -> LoadedKey:
        scheme = uri.split(":", 1)[0]
        loader = LOADERS.get(scheme)
        if loader is None:
            raise KeySourceError(f"unknown key source scheme {scheme!r}")
        stamp = 0.0
        if scheme == "file":
            try:
                stamp = Path(unquote(urlparse(uri).path)).stat().st_mtime
            except OSError as e:
                raise KeySourceError(f"cannot read key file: {e.strerror}") from None
        cache_key = (uri, stamp)
        with self._lock:
            hit = self._keys.get(cache_key)
        if hit is not None:
            return hit
        loaded = loader(uri, passphrase)
        with self._lock:
            self._keys[cache_key] = loaded
        return loaded


def sha256_fingerprint(cert: x509.Certificate) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(cert.dump())
    return digest.finalize().hex().upper()
