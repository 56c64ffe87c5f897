"""PKCS#12 key source: a seal's private key and certificate held by the service itself.

The operator hands a PKCS#12 file and its passphrase to ``signing-service key add`` once
(:func:`read_pkcs12`); the registry keeps the key re-packed (:func:`repack`) and sealed under a
secret of its own (see :mod:`signing_service.services.keystore`). At signing time the source
receives that material through the spec's secret callback (:func:`open_key`): it never reads a
path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import pkcs12
from pyhanko.sign.general import get_pyca_cryptography_hash
from pyhanko.sign.signers.pdf_cms import SimpleSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing_service.signing.fastcms import FastCmsMixin
from signing_service.signing.keys.base import KeySourceError, KeySpec, LoadedKey

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class CachedKeySigner(FastCmsMixin, SimpleSigner):
    """A :class:`SimpleSigner` that parses its private key once, and re-assembles the CMS of
    later signatures from the first one's DER (see :mod:`fastcms`).

    pyHanko's ``SimpleSigner`` re-parses the DER key with ``cryptography`` on every raw
    signature (and it signs twice per document): about 28-50 ms each time on our machines.
    """

    def __init__(self, *, private_key: PrivateKey, **kwargs: object) -> None:
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
class Pkcs12Content:
    """What a PKCS#12 file holds: the private key, its certificate and the other certificates."""

    private_key: PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    def key_matches_certificate(self) -> bool:
        """The private key is the certificate's key (their public halves are equal)."""
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ours = self.private_key.public_key().public_bytes(*spki)
        theirs = cx509.load_der_x509_certificate(self.certificate.dump()).public_key()
        return ours == theirs.public_bytes(*spki)


def _to_asn1(cert: cx509.Certificate) -> x509.Certificate:
    return x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def read_pkcs12(data: bytes, passphrase: bytes | None) -> Pkcs12Content:
    """Parse a PKCS#12 file (DER bytes) with its passphrase.

    Raises :class:`KeySourceError` ``unreadable`` for a wrong passphrase or a damaged file,
    and for a file without exactly a key and its certificate or with a key type other than RSA
    or ECDSA. The message never carries the passphrase.
    """
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, passphrase)
    except (ValueError, TypeError) as e:
        raise KeySourceError(f"cannot read PKCS#12: {type(e).__name__}", "unreadable") from None
    if key is None or cert is None:
        raise KeySourceError("the PKCS#12 file lacks a private key or certificate", "unreadable")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeySourceError("only RSA and ECDSA keys are supported", "unreadable")
    return Pkcs12Content(key, _to_asn1(cert), tuple(_to_asn1(c) for c in extra))


def repack(content: Pkcs12Content, name: str) -> bytes:
    """The key and its certificates as a PKCS#12 without its own encryption: the key store
    seals these bytes under the key's own secret (AES-256-GCM), which also authenticates them.
    """
    return pkcs12.serialize_key_and_certificates(
        name.encode(),
        content.private_key,
        cx509.load_der_x509_certificate(content.certificate.dump()),
        [cx509.load_der_x509_certificate(c.dump()) for c in content.chain] or None,
        serialization.NoEncryption(),
    )


def signer_for(content: Pkcs12Content, chain: tuple[x509.Certificate, ...]) -> LoadedKey:
    """A cached-key signer for the content's key and certificate, embedding ``chain``."""
    der = content.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = CachedKeySigner(
        private_key=content.private_key,
        signing_cert=content.certificate,
        signing_key=asn1_keys.PrivateKeyInfo.load(der),
        cert_registry=SimpleCertificateStore.from_certs(list(chain)),
    )
    return LoadedKey(signer=signer, signing_cert=content.certificate, chain=chain)


def open_key(spec: KeySpec) -> LoadedKey:
    """Open a registered PKCS#12 key from its unsealed material (the spec's secret)."""
    content = read_pkcs12(spec.read_secret(), None)
    if content.certificate.dump() != spec.certificate.dump() or not (
        content.key_matches_certificate()
    ):
        raise KeySourceError(
            "the stored key is not the registered certificate's key", "certificate_mismatch"
        )
    return signer_for(content, spec.chain)


def load_pkcs12_file(path: Path | str, passphrase: bytes | None) -> LoadedKey:
    """A key straight from a PKCS#12 file, its chain from the file: for tests, benchmarks and
    tools run by the operator, never for a request (requests sign with registered keys)."""
    content = read_pkcs12(Path(path).read_bytes(), passphrase)
    return signer_for(content, content.chain)
