"""The algorithm policy is total: every key type gives a problem or None, never an exception.

Issue 8: an Ed25519 signature made ``POST /v1/verifications`` answer 500 because the key-size
check read asn1crypto's ``bit_size``, which raises for EdDSA keys.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import algos, keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.x509.oid import NameOID

from signing_service.signing.certcheck import SignerCheckFailure, check_static
from signing_service.signing.policy import (
    ALGORITHM_MESSAGES,
    ALGORITHM_NOT_ALLOWED,
    KEY_TOO_SHORT,
    WEAK_DIGEST,
    cert_policy_problem,
    digest_policy_problem,
    key_policy_problem,
    verification_algorithm_problem,
)

PrivateKeyFactory = Callable[[], object]

KEYS: dict[str, PrivateKeyFactory] = {
    "rsa1024": lambda: rsa.generate_private_key(65537, 1024),
    "rsa2048": lambda: rsa.generate_private_key(65537, 2048),
    "p192": lambda: ec.generate_private_key(ec.SECP192R1()),
    "p224": lambda: ec.generate_private_key(ec.SECP224R1()),
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "secp256k1": lambda: ec.generate_private_key(ec.SECP256K1()),
    "brainpool256": lambda: ec.generate_private_key(ec.BrainpoolP256R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ed448": ed448.Ed448PrivateKey.generate,
    "x25519": x25519.X25519PrivateKey.generate,
    "x448": x448.X448PrivateKey.generate,
    "dsa2048": lambda: dsa.generate_private_key(2048),
}
_CACHE: dict[str, object] = {}


def private(name: str) -> object:
    if name not in _CACHE:
        _CACHE[name] = KEYS[name]()
    return _CACHE[name]


def public_info(name: str) -> keys.PublicKeyInfo:
    der = (
        private(name)
        .public_key()
        .public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return keys.PublicKeyInfo.load(der)


RSA_OID = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"
RSASSA_PSS_OID = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0a"


def _der_spki(oid: bytes, key_bits: bytes) -> bytes:
    """SubjectPublicKeyInfo DER with the given algorithm OID (encoded) and key bits, parsed
    by asn1crypto only when read (so it may be garbage)."""
    algorithm = b"\x30" + bytes([len(oid)]) + oid
    bits = b"\x03" + bytes([len(key_bits) + 1]) + b"\x00" + key_bits
    body = algorithm + bits
    return b"\x30" + bytes([len(body)]) + body


def odd_keys() -> dict[str, keys.PublicKeyInfo]:
    """Keys that cannot come from ``cryptography``: an unknown OID, EC with implicit
    parameters, RSA-PSS whose key is garbage, a truncated RSA key, a structure that is not a
    key at all."""
    p256 = public_info("p256")
    rsa_key = public_info("rsa2048")
    return {
        "unknown-oid": keys.PublicKeyInfo.load(
            _der_spki(b"\x06\x03\x2a\x03\x04", b"\x01\x02\x03")  # OID 1.2.3.4
        ),
        "ec-implicit-ca": keys.PublicKeyInfo(
            {
                "algorithm": {"algorithm": "ec", "parameters": ("implicit_ca", None)},
                "public_key": p256["public_key"].native,
            }
        ),
        "rsa-pss-garbage": keys.PublicKeyInfo.load(_der_spki(RSASSA_PSS_OID, b"\x01garbage")),
        "truncated": keys.PublicKeyInfo.load(
            _der_spki(RSA_OID, rsa_key["public_key"].contents[1:40])
        ),
        "not-der": keys.PublicKeyInfo.load(b"\x30\x03\x02\x01\x00"),
    }


ALL_KEY_NAMES = [*KEYS, "unknown-oid", "ec-implicit-ca", "rsa-pss-garbage", "truncated", "not-der"]


def any_key(name: str) -> keys.PublicKeyInfo:
    return public_info(name) if name in KEYS else odd_keys()[name]


# --- signing side: unchanged acceptance, now total -----------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rsa1024", "RSA 1024 bit < 2048"),
        ("rsa2048", None),
        ("p192", "ECDSA 192 bit < 256"),
        ("p224", "ECDSA 224 bit < 256"),
        ("p256", None),
        ("p384", None),
        ("p521", None),
        ("dsa2048", "thuật toán khóa dsa không được phép"),
        ("ed25519", "thuật toán khóa ed25519 không được phép"),
        ("ed448", "thuật toán khóa ed448 không được phép"),
        ("x25519", "thuật toán khóa x25519 không được phép"),
    ],
)
def test_key_policy_for_signing(name: str, expected: str | None) -> None:
    assert key_policy_problem(public_info(name)) == expected


@pytest.mark.parametrize("name", ALL_KEY_NAMES)
def test_key_policy_never_raises(name: str) -> None:
    problem = key_policy_problem(any_key(name))
    assert problem is None or isinstance(problem, str)
    if name in ("unknown-oid", "rsa-pss-garbage", "truncated", "not-der"):
        assert problem, f"{name} must be refused"
    # (EC with implicit parameters keeps its old signing-side answer, from the point's
    # length; verification refuses it, below.)


def _certificate(key_name: str) -> asn1_x509.Certificate:
    """A self-signed certificate (signed by an RSA key) for the named key, usable for
    signing (key usage: digitalSignature, nonRepudiation)."""
    issuer_key = private("rsa2048")
    assert isinstance(issuer_key, rsa.RSAPrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Thử {key_name}")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private(key_name).public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@pytest.mark.parametrize("name", ["ed25519", "ed448", "dsa2048", "rsa1024"])
def test_signing_refuses_keys_outside_policy_with_a_reason(name: str) -> None:
    cert = _certificate(name)
    assert cert_policy_problem(cert)
    with pytest.raises(SignerCheckFailure) as refused:
        check_static(cert)
    assert refused.value.reason == SignerCheckFailure.ALGORITHM


def test_signing_accepts_policy_keys() -> None:
    for name in ("rsa2048", "p256"):
        check_static(_certificate(name))


def test_cert_policy_on_a_certificate_with_an_unreadable_key() -> None:
    cert = _certificate("rsa2048")
    broken = asn1_x509.Certificate.load(cert.dump())
    broken["tbs_certificate"]["subject_public_key_info"] = odd_keys()["rsa-pss-garbage"]
    assert cert_policy_problem(broken)


@pytest.mark.parametrize(
    ("digest", "allowed"),
    [
        ("sha256", True),
        ("SHA512", True),
        ("sha3_256", True),
        ("sha1", False),
        ("md5", False),
        ("sha224", True),  # SHA-2 family: within "SHA-2 or SHA-3"
        ("sha3_224", True),
        ("shake256", False),
        (None, False),
        ("", False),
    ],
)
def test_digest_policy(digest: object, allowed: bool) -> None:
    assert (digest_policy_problem(digest) is None) is allowed


# --- verification side: a code per kind of problem -----------------------------------------


@pytest.mark.parametrize(
    ("key", "signature", "digest", "code"),
    [
        ("rsa2048", "rsassa_pkcs1v15", "sha256", None),
        ("rsa2048", "sha256_rsa", "sha256", None),
        ("rsa2048", "rsassa_pss", "sha384", None),
        ("rsa2048", "sha3_256_rsa", "sha3_256", None),
        ("p256", "sha256_ecdsa", "sha256", None),
        ("p384", "ecdsa", "sha384", None),
        ("p521", "sha512_ecdsa", "sha512", None),
        # weak digests, also inside the signature algorithm id
        ("rsa2048", "rsassa_pkcs1v15", "sha1", WEAK_DIGEST),
        ("rsa2048", "sha1_rsa", "sha256", WEAK_DIGEST),
        ("rsa2048", "md5_rsa", "md5", WEAK_DIGEST),
        ("p256", "sha1_ecdsa", "sha1", WEAK_DIGEST),
        # short keys
        ("rsa1024", "rsassa_pkcs1v15", "sha256", KEY_TOO_SHORT),
        ("p192", "sha256_ecdsa", "sha256", KEY_TOO_SHORT),
        ("p224", "ecdsa", "sha256", KEY_TOO_SHORT),
        # outside the national policy
        ("ed25519", "ed25519", "sha512", ALGORITHM_NOT_ALLOWED),
        ("ed448", "ed448", "shake256", ALGORITHM_NOT_ALLOWED),
        ("dsa2048", "sha256_dsa", "sha256", ALGORITHM_NOT_ALLOWED),
        ("secp256k1", "sha256_ecdsa", "sha256", ALGORITHM_NOT_ALLOWED),
        ("brainpool256", "sha256_ecdsa", "sha256", ALGORITHM_NOT_ALLOWED),
        ("x25519", "ed25519", "sha512", ALGORITHM_NOT_ALLOWED),
        ("rsa2048", "1.3.6.1.4.1.99999.7", "sha256", ALGORITHM_NOT_ALLOWED),
        ("rsa2048", "rsassa_pkcs1v15", "1.3.6.1.4.1.99999.8", ALGORITHM_NOT_ALLOWED),
        # a key that does not match the signature algorithm
        ("p256", "rsassa_pkcs1v15", "sha256", ALGORITHM_NOT_ALLOWED),
        ("rsa2048", "sha256_ecdsa", "sha256", ALGORITHM_NOT_ALLOWED),
        # not allowed wins over weak, weak over short
        ("rsa1024", "sha1_rsa", "sha1", WEAK_DIGEST),
        ("dsa2048", "sha1_dsa", "sha1", ALGORITHM_NOT_ALLOWED),
    ],
)
def test_verification_algorithm_problem(
    key: str, signature: str, digest: str, code: str | None
) -> None:
    problem = verification_algorithm_problem(digest, signature, public_info(key))
    if code is None:
        assert problem is None
    else:
        assert problem is not None
        assert problem.code == code, problem
        assert problem.code in ALGORITHM_MESSAGES
        assert problem.detail


def test_verification_problem_names_every_problem() -> None:
    problem = verification_algorithm_problem("sha1", "sha1_rsa", public_info("rsa1024"))
    assert problem is not None
    assert "SHA1" in problem.detail and "1024" in problem.detail


def test_verification_problem_accepts_asn1crypto_algorithm_objects() -> None:
    signature = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})
    digest = algos.DigestAlgorithm({"algorithm": "sha256"})
    assert verification_algorithm_problem(digest, signature, public_info("p256")) is None
    weak = algos.DigestAlgorithm({"algorithm": "sha1"})
    problem = verification_algorithm_problem(weak, signature, public_info("p256"))
    assert problem is not None and problem.code == WEAK_DIGEST


@pytest.mark.parametrize("name", ALL_KEY_NAMES)
@pytest.mark.parametrize("signature", ["rsassa_pkcs1v15", "ecdsa", "ed25519", "2.5.29.99", None])
@pytest.mark.parametrize("digest", ["sha256", "sha1", None, 42])
def test_verification_problem_never_raises(name: str, signature: object, digest: object) -> None:
    problem = verification_algorithm_problem(digest, signature, any_key(name))
    assert problem is None or (problem.code in ALGORITHM_MESSAGES and problem.detail)
    if name not in ("rsa2048", "p256", "p384", "p521"):
        assert problem is not None


def test_verification_problem_without_a_key() -> None:
    problem = verification_algorithm_problem("sha256", "rsassa_pkcs1v15", None)
    assert problem is not None and problem.code == ALGORITHM_NOT_ALLOWED


def _pss(params: dict[str, object] | None) -> algos.SignedDigestAlgorithm:
    spec: dict[str, object] = {"algorithm": "rsassa_pss"}
    if params is not None:
        spec["parameters"] = algos.RSASSAPSSParams(params)
    return algos.SignedDigestAlgorithm(spec)


def _mgf1(digest: str) -> dict[str, object]:
    return {"algorithm": "mgf1", "parameters": {"algorithm": digest}}


def _pss_params(digest: str, mgf_digest: str) -> dict[str, object]:
    return {"hash_algorithm": {"algorithm": digest}, "mask_gen_algorithm": _mgf1(mgf_digest)}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (_pss_params("sha256", "sha256"), None),
        (_pss_params("sha1", "sha1"), WEAK_DIGEST),
        (_pss_params("sha256", "md5"), WEAK_DIGEST),
        (_pss_params("md5", "sha256"), WEAK_DIGEST),
        # RFC 4055: an absent hash or MGF means SHA-1, absent parameters too.
        ({"mask_gen_algorithm": _mgf1("sha256")}, WEAK_DIGEST),
        ({"hash_algorithm": {"algorithm": "sha256"}}, WEAK_DIGEST),
        (None, WEAK_DIGEST),
    ],
)
def test_pss_parameters_are_read(params: dict[str, object] | None, expected: str | None) -> None:
    """The digest CMS names is not the one RSASSA-PSS signs with: the parameters decide."""
    problem = verification_algorithm_problem("sha256", _pss(params), public_info("rsa2048"))
    assert (problem.code if problem else None) == expected, problem
