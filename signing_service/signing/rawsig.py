"""Check a raw signature value against a certificate's public key (RSA PKCS#1 v1.5, ECDSA)."""

from __future__ import annotations

from asn1crypto import x509
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

HASHES = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha3_256": hashes.SHA3_256,
    "sha3_384": hashes.SHA3_384,
    "sha3_512": hashes.SHA3_512,
}


def raw_signature_valid(
    cert: x509.Certificate, data: bytes, signature: bytes, md_algorithm: str = "sha256"
) -> bool:
    public = cx509.load_der_x509_certificate(cert.dump()).public_key()
    hash_cls = HASHES.get(md_algorithm.lower())
    if hash_cls is None:
        return False
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), hash_cls())
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(hash_cls()))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True
