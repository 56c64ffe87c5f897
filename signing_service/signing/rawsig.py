"""Check a raw signature value against a certificate's public key (RSA PKCS#1 v1.5, ECDSA)."""

from __future__ import annotations

from asn1crypto import x509
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

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


def ecdsa_coordinate_size(cert: x509.Certificate) -> int | None:
    """Bytes of one coordinate of ``cert``'s ECDSA key (32 for P-256, 48 for P-384, 66 for
    P-521); ``None`` for any other kind of key."""
    public = cx509.load_der_x509_certificate(cert.dump()).public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return None
    return (public.curve.key_size + 7) // 8


def der_ecdsa_signature(cert: x509.Certificate, signature: bytes) -> bytes:
    """``signature`` in the DER form CMS requires (``Ecdsa-Sig-Value``, RFC 3279 §2.2.3 and
    RFC 5753 §3.2) when it is a raw ``r‖s`` of ``cert``'s ECDSA curve: two big-endian
    integers of the curve's coordinate size each (64 bytes for P-256, 96 for P-384, 132 for
    P-521), which is what PKCS#11 ``CKM_ECDSA`` and the CSC API return. Any other value is
    returned unchanged; that includes every DER value, whose lengths never equal the raw
    ones (a SEQUENCE header and two INTEGER headers: 70-72 bytes for P-256, 102-104 for
    P-384, 137-139 for P-521), so the two forms cannot be confused. The caller still checks
    the result against the key (:func:`raw_signature_valid`)."""
    size = ecdsa_coordinate_size(cert)
    if size is None or len(signature) != 2 * size:
        return signature
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    return utils.encode_dss_signature(r, s)
