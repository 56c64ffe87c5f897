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
    from signing_service.services.keys import load_certificates

    cert, *given = load_certificates(certificate)
    row = SigningKey(
        agency_id=agency_id(services, agency_code),
        name=name,
        kind="officer",
        certificate=cert.dump(),
        chain=pem_chain(issuer_chain(services, cert, tuple(given))),
        certificate_sha256=sha256_fingerprint(cert),
        reference={},
        created_by="test",
        created_at=datetime.now(UTC),
    )
    with services.db.transaction() as session:
        session.add(row)
        session.flush()
        return row.id
