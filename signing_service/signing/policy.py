"""Algorithm policy for new signatures.

Luật Giao dịch điện tử 2023 / Nghị định 23/2025 / TT 15/2025: RSA ≥ 2048 bits (PKCS#1 v2.1 or
later), ECDSA ≥ 256 bits, hash from SHA-2 or SHA-3; SHA-1 never for new signatures.
"""

from __future__ import annotations

from asn1crypto import keys, x509

ALLOWED_DIGESTS = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512"})
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256


def key_policy_problem(public_key: keys.PublicKeyInfo) -> str | None:
    """Return why a public key breaks the policy, or ``None`` when it complies."""
    algo = public_key.algorithm
    bits = public_key.bit_size
    if algo == "rsa" or algo == "rsassa_pss":
        if bits < MIN_RSA_BITS:
            return f"RSA {bits} bit < {MIN_RSA_BITS}"
        return None
    if algo == "ec":
        if bits < MIN_EC_BITS:
            return f"ECDSA {bits} bit < {MIN_EC_BITS}"
        return None
    return f"thuật toán khóa {algo} không được phép"


def cert_policy_problem(cert: x509.Certificate) -> str | None:
    return key_policy_problem(cert.public_key)


def digest_policy_problem(md_algorithm: str) -> str | None:
    if md_algorithm.lower() not in ALLOWED_DIGESTS:
        return f"hàm băm {md_algorithm} không được phép"
    return None
