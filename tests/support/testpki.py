"""A throw-away three-level PKI shaped like the Government CA G2 hierarchy, built in memory.

``RootCA chuyên dùng Chính phủ G2`` → ``CA phục vụ các cơ quan Nhà nước G2`` (pathlen 0, as
the real one) → an end entity. The tests configure the root as an extra trust anchor of kind
``public_duty`` and check that a path ending there is reported as public-duty; the same chain
signs PDFs (:meth:`IssuedChain.signer`) for end-to-end verifier tests. Certificates are
asn1crypto objects (what pyHanko takes); keys are made fresh on every call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asn1crypto import keys, x509
from cryptography import x509 as cx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

TEST_ORG = "Ban Cơ yếu Chính phủ (thử nghiệm)"
ROOT_NAME = cx.Name(
    [
        cx.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        cx.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORG),
        cx.NameAttribute(NameOID.COMMON_NAME, "Thử nghiệm RootCA chuyên dùng Chính phủ G2"),
    ]
)
INTERMEDIATE_NAME = cx.Name(
    [
        cx.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        cx.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORG),
        cx.NameAttribute(NameOID.COMMON_NAME, "Thử nghiệm CA phục vụ các cơ quan Nhà nước G2"),
    ]
)
# A public-duty official: title and organisation, as TT 15/2025 / the domain notes expect.
OFFICER_NAME = cx.Name(
    [
        cx.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        cx.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Hà Nội"),
        cx.NameAttribute(NameOID.ORGANIZATION_NAME, "Sở Tư pháp tỉnh Thử nghiệm"),
        cx.NameAttribute(NameOID.TITLE, "Phó Giám đốc"),
        cx.NameAttribute(NameOID.COMMON_NAME, "Nguyễn Văn Thử"),
    ]
)
# An agency seal: CN equal to O.
SEAL_NAME = cx.Name(
    [
        cx.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        cx.NameAttribute(NameOID.ORGANIZATION_NAME, "Sở Tư pháp tỉnh Thử nghiệm"),
        cx.NameAttribute(NameOID.COMMON_NAME, "Sở Tư pháp tỉnh Thử nghiệm"),
    ]
)


def new_key(kind: str = "rsa") -> PrivateKey:
    """``rsa`` (2048), ``ec`` (P-256) or ``ed25519``."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}")


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def to_asn1(cert: cx.Certificate) -> x509.Certificate:
    return x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def key_info(key: PrivateKey) -> keys.PrivateKeyInfo:
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return keys.PrivateKeyInfo.load(der)


def issue_certificate(
    subject: cx.Name,
    subject_key: PrivateKey,
    issuer: cx.Name,
    issuer_key: PrivateKey,
    *,
    not_before: datetime,
    not_after: datetime,
    ca: bool = False,
    path_length: int | None = None,
    issuer_cert: cx.Certificate | None = None,
    crl_url: str | None = None,
) -> cx.Certificate:
    """One certificate: CA (keyCertSign, cRLSign) or end entity (digitalSignature,
    nonRepudiation), with subject/authority key identifiers and an optional CRL URL."""
    public = subject_key.public_key()
    builder = (
        cx.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(cx.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(cx.BasicConstraints(ca=ca, path_length=path_length if ca else None), True)
        .add_extension(cx.SubjectKeyIdentifier.from_public_key(public), False)
        .add_extension(
            cx.KeyUsage(
                digital_signature=not ca,
                content_commitment=not ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
    )
    authority = issuer_cert.public_key() if issuer_cert is not None else public
    builder = builder.add_extension(
        cx.AuthorityKeyIdentifier.from_issuer_public_key(authority),  # type: ignore[arg-type]
        False,
    )
    if crl_url is not None:
        point = cx.DistributionPoint([cx.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(cx.CRLDistributionPoints([point]), False)
    return builder.sign(issuer_key, _hash_for(issuer_key))  # type: ignore[arg-type]


@dataclass(frozen=True)
class IssuedChain:
    """root → intermediate → leaf, as asn1crypto certificates, with the keys."""

    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    root_key: PrivateKey
    intermediate_key: PrivateKey
    leaf_private_key: PrivateKey

    @property
    def leaf_key(self) -> keys.PrivateKeyInfo:
        """The leaf's private key as pyHanko's ``SimpleSigner`` takes it."""
        return key_info(self.leaf_private_key)

    def write_root(self, path: Path) -> Path:
        """The root as a PEM file (to configure it as an extra trust anchor)."""
        cert = cx.load_der_x509_certificate(self.root.dump())
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def signer(self) -> Any:
        """A pyHanko ``SimpleSigner`` for the leaf, carrying the intermediate and the root."""
        from pyhanko.sign.signers import SimpleSigner
        from pyhanko_certvalidator.registry import SimpleCertificateStore

        return SimpleSigner(
            signing_cert=self.leaf,
            signing_key=self.leaf_key,
            cert_registry=SimpleCertificateStore.from_certs([self.intermediate, self.root]),
        )

    def crl(
        self,
        revoked: Iterable[tuple[int, datetime]] = (),
        *,
        this_update: datetime | None = None,
        next_update: datetime | None = None,
        issuer_label: str = "intermediate",
    ) -> bytes:
        """A DER CRL of the intermediate (or, with ``issuer_label="root"``, of the root)
        listing ``(serial, revocation time)`` pairs."""
        now = this_update or datetime.now(UTC) - timedelta(minutes=1)
        issuer_cert = self.root if issuer_label == "root" else self.intermediate
        signing_key = self.root_key if issuer_label == "root" else self.intermediate_key
        issuer = cx.load_der_x509_certificate(issuer_cert.dump())
        builder = (
            cx.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(now)
            .next_update(next_update or now + timedelta(days=7))
            .add_extension(
                cx.AuthorityKeyIdentifier.from_issuer_public_key(
                    issuer.public_key()  # type: ignore[arg-type]
                ),
                False,
            )
            .add_extension(cx.CRLNumber(1), False)
        )
        for serial, when in revoked:
            builder = builder.add_revoked_certificate(
                cx.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        crl = builder.sign(signing_key, _hash_for(signing_key))  # type: ignore[arg-type]
        return crl.public_bytes(serialization.Encoding.DER)


def issue_chain(
    *,
    root_name: cx.Name = ROOT_NAME,
    intermediate_name: cx.Name = INTERMEDIATE_NAME,
    leaf_name: cx.Name = OFFICER_NAME,
    leaf_key_kind: str = "rsa",
    ca_not_before: datetime = datetime(2020, 1, 1, tzinfo=UTC),
    ca_not_after: datetime = datetime(2045, 1, 1, tzinfo=UTC),
    leaf_not_before: datetime = datetime(2025, 1, 1, tzinfo=UTC),
    leaf_not_after: datetime = datetime(2035, 1, 1, tzinfo=UTC),
    crl_url: str | None = None,
) -> IssuedChain:
    """A fresh Government-CA-shaped chain (RSA-2048 CAs; leaf key ``rsa``/``ec``/``ed25519``).

    ``crl_url``: written as the leaf's CRL distribution point (serve :meth:`IssuedChain.crl`
    there, or pass the CRL to the validation context); none by default.
    """
    root_key, intermediate_key = new_key("rsa"), new_key("rsa")
    leaf_key = new_key(leaf_key_kind)
    root = issue_certificate(
        root_name,
        root_key,
        root_name,
        root_key,
        not_before=ca_not_before,
        not_after=ca_not_after,
        ca=True,
    )
    intermediate = issue_certificate(
        intermediate_name,
        intermediate_key,
        root_name,
        root_key,
        not_before=ca_not_before,
        not_after=ca_not_after,
        ca=True,
        path_length=0,
        issuer_cert=root,
    )
    leaf = issue_certificate(
        leaf_name,
        leaf_key,
        intermediate_name,
        intermediate_key,
        not_before=leaf_not_before,
        not_after=leaf_not_after,
        issuer_cert=intermediate,
        crl_url=crl_url,
    )
    return IssuedChain(
        root=to_asn1(root),
        intermediate=to_asn1(intermediate),
        leaf=to_asn1(leaf),
        root_key=root_key,
        intermediate_key=intermediate_key,
        leaf_private_key=leaf_key,
    )
