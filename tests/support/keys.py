"""Registered keys and profiles for tests.

:func:`register` goes through the registry as the operator's ``key add`` does (every check).
:func:`store_without_checks` writes a key the way the registry stores it but skips the checks:
it stands for a key that passed them when it was registered and has since expired, been
revoked, or been found weak, which is what the signing-time checks exist for. :func:`profile`
inserts a profile row bound to a key, as an administrator's saved profile would be.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from signing_service.services.container import Services
from signing_service.services.keys import (
    KeyView,
    Material,
    OfficerMaterial,
    Pkcs12Material,
    issuer_chain,
    pem_chain,
    register_key,
)
from signing_service.services.keystore import KeyStore, binding
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.keys.base import sha256_fingerprint
from signing_service.signing.keys.pkcs12 import read_pkcs12, repack
from signing_service.store.models import Agency, SigningKey, SigningProfile, new_id

AGENCY_A = "000.00.12.H12"
AGENCY_B = "000.00.31.H26"


def loaded_dev_keys(
    pki: Any, labels: tuple[str, ...] = ("officer", "agency-a-seal", "agency-b-seal")
) -> dict[str, Any]:
    """The dev PKI's PKCS#12 keys by label, loaded for in-process signing (signing core tests)."""
    from signing_service.signing.keys.pkcs12 import load_pkcs12_file

    return {
        label: load_pkcs12_file(pki.p12_path(label), DEV_KEY_PASSPHRASE.encode())
        for label in labels
    }


def p12(services: Services, label: str) -> Pkcs12Material:
    """A dev PKI PKCS#12 as ``key add --pkcs12`` is given it."""
    assert services.dev_pki is not None
    return Pkcs12Material(
        services.dev_pki.p12_path(label).read_bytes(), DEV_KEY_PASSPHRASE.encode()
    )


def officer_cert(services: Services, label: str) -> OfficerMaterial:
    assert services.dev_pki is not None
    return OfficerMaterial(services.dev_pki.cert_path(label).read_bytes())


def register(
    services: Services, name: str, material: Material, agency_code: str = AGENCY_A
) -> KeyView:
    """Register through the registry, with every check."""
    return register_key(
        services, agency_code=agency_code, name=name, material=material, actor="test"
    )


def agency_id(services: Services, code: str) -> int:
    with services.db.transaction() as session:
        found = session.scalars(select(Agency.id).where(Agency.code == code)).one()
    return int(found)


def store_without_checks(
    services: Services, name: str, p12_file: Path, agency_code: str = AGENCY_A
) -> int:
    """Store a PKCS#12 key as the registry does, without its checks; returns the row id."""
    content = read_pkcs12(p12_file.read_bytes(), DEV_KEY_PASSPHRASE.encode())
    uid = new_id()
    wrapped = KeyStore.of(services).put(
        uid, binding(uid, agency_code, "pkcs12"), repack(content, name)
    )
    row = SigningKey(
        uid=uid,
        agency_id=agency_id(services, agency_code),
        name=name,
        kind="pkcs12",
        certificate=content.certificate.dump(),
        chain=pem_chain(content.chain or issuer_chain(services, content.certificate)),
        certificate_sha256=sha256_fingerprint(content.certificate),
        reference={},
        wrapped_key=wrapped,
        created_by="test",
        created_at=datetime.now(UTC),
    )
    with services.db.transaction() as session:
        session.add(row)
        session.flush()
        return row.id


def key_id(services: Services, name: str, agency_code: str = AGENCY_A) -> int:
    with services.db.transaction() as session:
        found = session.scalars(
            select(SigningKey.id).where(
                SigningKey.agency_id == agency_id(services, agency_code), SigningKey.name == name
            )
        ).one()
    return int(found)


def profile(
    services: Services,
    name: str,
    key: str | None,
    agency_code: str = AGENCY_A,
    **fields: Any,
) -> None:
    """Insert profile ``name`` using registered key ``key`` (a saved profile's row)."""
    values: dict[str, Any] = {"level": "B-B", "reason": "Ký số văn bản", **fields}
    with services.db.transaction() as session:
        session.add(
            SigningProfile(
                agency_id=agency_id(services, agency_code),
                name=name,
                key_id=key_id(services, key, agency_code) if key is not None else None,
                **values,
            )
        )


def store_officer_without_checks(
    services: Services, name: str, certificate: bytes, agency_code: str = AGENCY_A
) -> int:
    """Store an officer certificate (PEM/DER) as the registry does, without its checks."""
    return store_reference_without_checks(
        services, name, "officer", certificate, agency_code=agency_code
    )


def store_reference_without_checks(
    services: Services,
    name: str,
    kind: str,
    certificate: bytes,
    reference: dict[str, str] | None = None,
    secret: bytes | None = None,
    agency_code: str = AGENCY_A,
) -> int:
    """Store a key of ``kind`` (``pkcs11``, ``csc`` or ``officer``) as the registry does,
    without its checks; returns the row id. ``certificate``: PEM (the signer's certificate,
    then any of its chain) or DER; ``reference``: as the registry records it (the configured
    module or provider name and where the key is: ``{"module": "softhsm", "token": …,
    "object": …}``, ``{"provider": …, "credential": …}``); ``secret``: what the key store seals
    (a PKCS#11 PIN)."""
    from signing_service.services.keys import load_certificates

    cert, *given = load_certificates(certificate)
    uid = new_id()
    wrapped = None
    if secret is not None:
        wrapped = KeyStore.of(services).put(uid, binding(uid, agency_code, kind), secret)
    row = SigningKey(
        uid=uid,
        agency_id=agency_id(services, agency_code),
        name=name,
        kind=kind,
        certificate=cert.dump(),
        chain=pem_chain(issuer_chain(services, cert, tuple(given))),
        certificate_sha256=sha256_fingerprint(cert),
        reference=reference or {},
        wrapped_key=wrapped,
        created_by="test",
        created_at=datetime.now(UTC),
    )
    with services.db.transaction() as session:
        session.add(row)
        session.flush()
        return row.id


def issue_dev_certificate(
    pki: Any,
    public_key: Any,
    common_name: str,
    organization: str,
    *,
    title: str | None = None,
    subject: Any = None,
) -> bytes:
    """A certificate for ``public_key`` (a ``cryptography`` public key) issued by the dev PKI's
    intermediate CA, end entity (digitalSignature, nonRepudiation), with the same CRL
    distribution point as the dev signers: the dev PKI server's CRL vouches for it. Returns PEM.
    For keys the dev PKI configuration does not know (another token, another provider).
    ``subject``: a ``cryptography`` ``Name`` to use as it is (string types included) instead of
    the one built from ``common_name``, ``organization`` and ``title``."""
    from datetime import timedelta

    from cryptography import x509 as cx
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtensionOID, NameOID

    issuer_key = serialization.load_pem_private_key(
        (pki.directory / "keys/interm.key.pem").read_bytes(), None
    )
    issuer = cx.load_pem_x509_certificate(pki.cert_path("interm").read_bytes())
    template = cx.load_pem_x509_certificate(pki.cert_path("agency-a-seal").read_bytes())
    crl_points = template.extensions.get_extension_for_oid(
        ExtensionOID.CRL_DISTRIBUTION_POINTS
    ).value
    names = [
        cx.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        cx.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
    ]
    if title is not None:
        names.append(cx.NameAttribute(NameOID.TITLE, title))
    names.append(cx.NameAttribute(NameOID.COMMON_NAME, common_name))
    now = datetime.now(UTC)
    cert = (
        cx.CertificateBuilder()
        .subject_name(subject if subject is not None else cx.Name(names))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(cx.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=730))
        .add_extension(cx.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            cx.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(cx.SubjectKeyIdentifier.from_public_key(public_key), False)
        .add_extension(
            cx.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),  # type: ignore[arg-type]
            False,
        )
        .add_extension(crl_points, False)
        .sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM)
