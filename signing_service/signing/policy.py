"""Algorithm policy for signatures, new and verified.

Luật Giao dịch điện tử 2023 / Nghị định 23/2025 / TT 15/2025: RSA ≥ 2048 bits (PKCS#1 v2.1 or
later: RSASSA-PKCS1-v1_5 or RSASSA-PSS), ECDSA ≥ 256 bits, hash from SHA-2 or SHA-3; SHA-1 never
for new signatures.

Every function here is total: any key (RSA, RSA-PSS, EC on any curve or with explicit
parameters, Ed25519, Ed448, DSA, X25519, an unknown OID, bytes that do not parse) gives a
problem or ``None``, never an exception. The verifier evaluates hostile files with them, where
an exception would turn a result into a crash (issue 8: an Ed25519 signature made
``POST /v1/verifications`` answer 500 because asn1crypto's ``bit_size`` raises for EdDSA keys).
"""

from __future__ import annotations

from typing import NamedTuple

from asn1crypto import algos, keys, x509

# "SHA-2 or SHA-3" (TT 15/2025): every member of both families, SHA-224 and the truncated
# SHA-512 variants included, is within the rule a verifier applies. This service itself signs
# and asks timestamps with SHA-256 or stronger.
ALLOWED_DIGESTS = frozenset(
    {
        "sha224",
        "sha256",
        "sha384",
        "sha512",
        "sha512_224",
        "sha512_256",
        "sha3_224",
        "sha3_256",
        "sha3_384",
        "sha3_512",
    }
)
# Broken for signatures (collisions): reported as weak rather than merely not allowed.
WEAK_DIGESTS = frozenset({"md2", "md4", "md5", "sha1", "ripemd160"})
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
# ECDSA is allowed on the NIST prime curves (FIPS 186-4 / SEC 2 names as asn1crypto gives
# them); those below 256 bits are too short, every other curve is outside the policy.
NIST_CURVES = {
    "secp192r1": 192,
    "secp224r1": 224,
    "secp256r1": 256,
    "secp384r1": 384,
    "secp521r1": 521,
}

# Reason codes of verification_algorithm_problem (ETSI EN 319 102-1 sub-indication
# CRYPTO_CONSTRAINTS_FAILURE, or ..._NO_POE when a proof of existence could save it).
WEAK_DIGEST = "WEAK_DIGEST"
KEY_TOO_SHORT = "KEY_TOO_SHORT"
ALGORITHM_NOT_ALLOWED = "ALGORITHM_NOT_ALLOWED"

ALGORITHM_MESSAGES: dict[str, str] = {
    WEAK_DIGEST: (
        "Chữ ký dùng hàm băm yếu (MD5, SHA-1) không còn được chấp nhận: chỉ dùng SHA-2 hoặc SHA-3."
    ),
    KEY_TOO_SHORT: "Khóa của người ký quá ngắn so với quy định (RSA ≥ 2048 bit, ECDSA ≥ 256 bit).",
    ALGORITHM_NOT_ALLOWED: (
        "Chữ ký dùng thuật toán không thuộc danh mục được phép (RSA ≥ 2048 bit, ECDSA trên "
        "đường cong NIST ≥ 256 bit, hàm băm SHA-2/SHA-3); chưa thể kết luận chữ ký hợp lệ "
        "theo quy định."
    ),
}


class AlgorithmProblem(NamedTuple):
    """A signature's algorithms outside the policy: ``code`` from ``ALGORITHM_MESSAGES``,
    ``detail`` a short Vietnamese explanation naming the algorithm."""

    code: str
    detail: str


class _KeyFacts(NamedTuple):
    family: str  # rsa | rsassa_pss | ec | dsa | ed25519 | ed448 | x25519 | x448 | <oid>
    bits: int | None
    curve: str | None  # named curve, "explicit" or None


def _key_facts(public_key: keys.PublicKeyInfo) -> _KeyFacts | None:
    """Family, size and curve of a key, or ``None`` when the structure cannot be read."""
    try:
        family = str(public_key["algorithm"]["algorithm"].native)
    except Exception:  # noqa: BLE001 - a malformed key is a policy problem, not a crash
        return None
    bits: int | None = None
    curve: str | None = None
    try:
        if family in ("rsa", "rsassa_pss", "dsa"):
            # asn1crypto's bit_size covers RSA and DSA; it raises for EdDSA/XDH keys.
            bits = int(public_key.bit_size)
        elif family == "ec":
            kind, value = public_key.curve
            curve = str(value) if kind == "named" else "explicit"
            bits = NIST_CURVES.get(curve)
            if bits is None:
                bits = int(public_key.bit_size)
    except Exception:  # noqa: BLE001
        return _KeyFacts(family, None, curve)
    return _KeyFacts(family, bits, curve)


def _key_problem(public_key: keys.PublicKeyInfo) -> AlgorithmProblem | None:
    facts = _key_facts(public_key)
    if facts is None:
        return AlgorithmProblem(ALGORITHM_NOT_ALLOWED, "không đọc được khóa công khai")
    family, bits, curve = facts
    if family in ("rsa", "rsassa_pss"):
        if bits is None:
            return AlgorithmProblem(ALGORITHM_NOT_ALLOWED, "không đọc được khóa RSA")
        if bits < MIN_RSA_BITS:
            return AlgorithmProblem(KEY_TOO_SHORT, f"RSA {bits} bit < {MIN_RSA_BITS}")
        return None
    if family == "ec":
        if curve not in NIST_CURVES:
            return AlgorithmProblem(
                ALGORITHM_NOT_ALLOWED,
                f"ECDSA trên đường cong {curve or 'không rõ'} không được phép",
            )
        if bits is None or bits < MIN_EC_BITS:
            return AlgorithmProblem(KEY_TOO_SHORT, f"ECDSA {bits} bit < {MIN_EC_BITS}")
        return None
    names = {"ed25519": "Ed25519", "ed448": "Ed448", "dsa": "DSA"}
    return AlgorithmProblem(
        ALGORITHM_NOT_ALLOWED, f"thuật toán khóa {names.get(family, family)} không được phép"
    )


def key_policy_problem(public_key: keys.PublicKeyInfo) -> str | None:
    """Why a public key may not be used for a new signature, or ``None`` when it complies.

    RSA/RSA-PSS ≥ 2048 bits, EC ≥ 256 bits; every other algorithm (DSA, Ed25519, Ed448, XDH,
    unknown) and every unreadable key is refused. Never raises. (The curve is not checked
    here, as before; :func:`verification_algorithm_problem` does.)
    """
    facts = _key_facts(public_key)
    if facts is None:
        return "không đọc được khóa công khai"
    family, bits, _ = facts
    if family in ("rsa", "rsassa_pss"):
        if bits is None:
            return "không đọc được khóa RSA"
        if bits < MIN_RSA_BITS:
            return f"RSA {bits} bit < {MIN_RSA_BITS}"
        return None
    if family == "ec":
        if bits is None:
            return "không đọc được khóa ECDSA"
        if bits < MIN_EC_BITS:
            return f"ECDSA {bits} bit < {MIN_EC_BITS}"
        return None
    return f"thuật toán khóa {family} không được phép"


def cert_policy_problem(cert: x509.Certificate) -> str | None:
    """:func:`key_policy_problem` for a certificate's key; never raises."""
    try:
        public_key = cert.public_key
    except Exception:  # noqa: BLE001 - a malformed certificate is a problem, not a crash
        return "không đọc được khóa công khai của chứng thư"
    return key_policy_problem(public_key)


def _digest_name(md_algorithm: object) -> str:
    if isinstance(md_algorithm, algos.DigestAlgorithm):
        try:
            return str(md_algorithm["algorithm"].native).lower()
        except Exception:  # noqa: BLE001
            return "?"
    return str(md_algorithm).lower()


def digest_policy_problem(md_algorithm: object) -> str | None:
    """Why a digest algorithm (a name such as ``"sha256"``) is not allowed, or ``None``."""
    name = _digest_name(md_algorithm)
    if name not in ALLOWED_DIGESTS:
        return f"hàm băm {md_algorithm} không được phép"
    return None


def _digest_problem(name: str) -> AlgorithmProblem | None:
    if name in ALLOWED_DIGESTS:
        return None
    if name in WEAK_DIGESTS:
        return AlgorithmProblem(WEAK_DIGEST, f"hàm băm {name.upper()} yếu")
    return AlgorithmProblem(ALGORITHM_NOT_ALLOWED, f"hàm băm {name} không được phép")


def _pss_digests(signature_algorithm: algos.SignedDigestAlgorithm) -> tuple[str, ...]:
    """The digests RSASSA-PSS parameters name: the message hash and MGF1's hash (RFC 4055
    §3.1: absent parameters, or absent fields, mean SHA-1). ``("?",)`` when unreadable."""
    try:
        params = signature_algorithm["parameters"]
        if not isinstance(params, algos.RSASSAPSSParams):
            params = algos.RSASSAPSSParams.load(params.dump()) if params.native else None
        if params is None:
            return ("sha1",)
        digests = [params["hash_algorithm"]["algorithm"].native]
        mgf = params["mask_gen_algorithm"]
        if mgf["algorithm"].native != "mgf1":
            return (*digests, "?")
        digests.append(mgf["parameters"]["algorithm"].native)
        return tuple(str(d) for d in digests)
    except Exception:  # noqa: BLE001 - parameters we cannot read are not in the policy
        return ("?",)


def _signature_family_and_digests(signature_algorithm: object) -> tuple[str, tuple[str, ...]]:
    """(family, digests named inside the algorithm id) of a CMS signature algorithm such as
    ``rsassa_pkcs1v15``, ``sha256_rsa``, ``sha1_ecdsa``, ``rsassa_pss`` (with its parameters'
    hash and MGF1 hash when given as an asn1crypto ``SignedDigestAlgorithm``), ``ed25519`` or an
    unknown dotted OID. Families: rsa, rsassa_pss, ecdsa, dsa, ed25519, ed448, or the name."""
    name = signature_algorithm
    if isinstance(signature_algorithm, algos.SignedDigestAlgorithm):
        try:
            name = signature_algorithm["algorithm"].native
        except Exception:  # noqa: BLE001
            name = "?"
    text = str(name).lower()
    if text in ("rsassa_pkcs1v15", "rsa"):
        return "rsa", ()
    if text == "rsassa_pss" and isinstance(signature_algorithm, algos.SignedDigestAlgorithm):
        return text, _pss_digests(signature_algorithm)
    if text in ("rsassa_pss", "ecdsa", "dsa", "ed25519", "ed448"):
        return text, ()
    digest, sep, family = text.partition("_")
    if sep and family in ("rsa", "ecdsa", "dsa"):
        return family, (digest,)
    # sha3_256_rsa and the like: the digest has an underscore of its own.
    head, sep, family = text.rpartition("_")
    if sep and family in ("rsa", "ecdsa", "dsa"):
        return family, (head,)
    return text, ()


_KEY_FAMILY_FOR_SIGNATURE = {
    "rsa": ("rsa", "rsassa_pss"),
    "rsassa_pss": ("rsa", "rsassa_pss"),
    "ecdsa": ("ec",),
}


def verification_algorithm_problem(
    md_algorithm: object, signature_algorithm: object, public_key: keys.PublicKeyInfo | None
) -> AlgorithmProblem | None:
    """Classify a verified signature's algorithms against the national policy.

    :param md_algorithm: the message digest (pyHanko's ``SignatureStatus.md_algorithm``, e.g.
        ``"sha256"``), or an asn1crypto ``DigestAlgorithm``.
    :param signature_algorithm: the CMS signature algorithm (pyHanko's
        ``SignatureStatus.pkcs7_signature_mechanism``, e.g. ``"rsassa_pkcs1v15"``,
        ``"sha256_ecdsa"``, ``"ed25519"``, a dotted OID), or an asn1crypto
        ``SignedDigestAlgorithm``.
    :param public_key: the signer certificate's key (``cert.public_key``); ``None`` when unknown.
    :return: ``None`` when RSA ≥ 2048 (PKCS#1 v1.5 or PSS) or ECDSA on a NIST curve ≥ 256
        bits, with SHA-2/SHA-3 digests; otherwise the first problem in this order, with every
        problem named in ``detail``: ``ALGORITHM_NOT_ALLOWED`` (Ed25519, Ed448, DSA, other
        curves, unknown algorithms, a key that does not match the signature algorithm or cannot
        be read), ``WEAK_DIGEST`` (MD5, SHA-1, also inside ``sha1_rsa``-style ids and in RSASSA-PSS
        parameters, whose hash and MGF1 hash default to SHA-1),
        ``KEY_TOO_SHORT``. Never raises.
    """
    problems: list[AlgorithmProblem] = []
    family, embedded_digests = _signature_family_and_digests(signature_algorithm)
    allowed_keys = _KEY_FAMILY_FOR_SIGNATURE.get(family)
    if allowed_keys is None:
        pretty = {"ed25519": "Ed25519", "ed448": "Ed448", "dsa": "DSA"}.get(family, family)
        problems.append(
            AlgorithmProblem(ALGORITHM_NOT_ALLOWED, f"thuật toán chữ ký {pretty} không được phép")
        )
    if public_key is None:
        problems.append(AlgorithmProblem(ALGORITHM_NOT_ALLOWED, "không có khóa công khai"))
    else:
        key_problem = _key_problem(public_key)
        if key_problem is not None:
            problems.append(key_problem)
        elif allowed_keys is not None:
            facts = _key_facts(public_key)
            if facts is not None and facts.family not in allowed_keys:
                problems.append(
                    AlgorithmProblem(
                        ALGORITHM_NOT_ALLOWED,
                        f"khóa {facts.family} không khớp thuật toán chữ ký {family}",
                    )
                )
    for digest in dict.fromkeys(
        d for d in (_digest_name(md_algorithm), *embedded_digests) if d is not None
    ):
        digest_problem = _digest_problem(digest)
        if digest_problem is not None:
            problems.append(digest_problem)
    if not problems:
        return None
    order = (ALGORITHM_NOT_ALLOWED, WEAK_DIGEST, KEY_TOO_SHORT)
    first = min(problems, key=lambda p: order.index(p.code))
    details = "; ".join(dict.fromkeys(p.detail for p in problems))
    return AlgorithmProblem(first.code, details)
