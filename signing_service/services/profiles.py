"""Signing profiles per agency, managed by the agency's admin key.

A profile names a key source (``file:``, ``pkcs11:``, ``external:``, ``csc:``), the PAdES
level, the TSA, reason, location and appearance. Before it is saved, its key is loaded and its
certificate checked exactly as before a signature (validity, key usage, algorithm policy,
revocation): a profile that could not sign is refused with the same error codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from signing_service import audit, errors
from signing_service._async import run_sync
from signing_service.services.container import Services
from signing_service.services.signing import check_signer, load_key
from signing_service.signing.appearance import AppearanceSpec
from signing_service.signing.levels import SignatureLevel
from signing_service.store.models import Agency, SigningProfile

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
SCHEMES = ("file:", "pkcs11:", "external:", "csc:")
FIELDS = ("key_uri", "level", "tsa_url", "reason", "location", "appearance", "check_revocation")


@dataclass(frozen=True)
class ProfileView:
    name: str
    key_source: str  # the URI's scheme only: paths and token names stay server-side
    level: str
    tsa_url: str | None
    reason: str | None
    location: str | None
    appearance: dict[str, Any] | None
    check_revocation: bool
    certificate_sha256: str | None
    created_at: str

    @classmethod
    def of(cls, profile: SigningProfile, fingerprint: str | None = None) -> ProfileView:
        return cls(
            name=profile.name,
            key_source=profile.key_uri.split(":", 1)[0],
            level=profile.level,
            tsa_url=profile.tsa_url,
            reason=profile.reason,
            location=profile.location,
            appearance=profile.appearance,
            check_revocation=profile.check_revocation,
            certificate_sha256=fingerprint,
            created_at=profile.created_at.isoformat(),
        )


def _validate(services: Services, values: dict[str, Any]) -> str | None:
    """Refuse a profile that could not sign; return its certificate's fingerprint."""
    key_uri = values["key_uri"]
    if not isinstance(key_uri, str) or not key_uri.startswith(SCHEMES):
        raise errors.InvalidKeyUri()
    try:
        level = SignatureLevel.parse(values["level"])
    except (ValueError, AttributeError):
        raise errors.InvalidLevel() from None
    if level.needs_timestamp and not values.get("tsa_url"):
        raise errors.InvalidProfile("Mức B-T trở lên cần máy chủ dấu thời gian (tsa_url).")
    if values.get("appearance") is not None:
        try:
            AppearanceSpec(**values["appearance"])
        except TypeError:
            raise errors.InvalidProfile(
                "Thiết lập hình thức chữ ký (appearance) không hợp lệ."
            ) from None
    if services.settings.is_production and str(services.settings.pki_dir) in key_uri:
        raise errors.InvalidProfile("Không được dùng khóa của PKI thử nghiệm ở chế độ production.")
    if key_uri.startswith("external:"):
        return None
    key = load_key(services, key_uri)
    run_sync(check_signer(services, key.signing_cert, key.chain))
    return key.signing_cert.sha256.hex().upper()


def list_profiles(services: Services, agency: Agency) -> list[ProfileView]:
    with services.db.transaction() as session:
        rows = session.scalars(
            select(SigningProfile)
            .where(SigningProfile.agency_id == agency.id, SigningProfile.disabled_at.is_(None))
            .order_by(SigningProfile.name)
        ).all()
    return [ProfileView.of(p) for p in rows]


def _get(session: Any, agency: Agency, name: str) -> SigningProfile:
    profile = session.scalars(
        select(SigningProfile).where(
            SigningProfile.agency_id == agency.id,
            SigningProfile.name == name,
            SigningProfile.disabled_at.is_(None),
        )
    ).first()
    if profile is None:
        raise errors.ProfileNotFound()
    return profile


def get_profile(services: Services, agency: Agency, name: str) -> ProfileView:
    with services.db.transaction() as session:
        return ProfileView.of(_get(session, agency, name))


def create_profile(
    services: Services, agency: Agency, values: dict[str, Any], *, actor: str
) -> ProfileView:
    name = values.get("name") or ""
    if not NAME.match(name):
        raise errors.InvalidProfile(
            "Tên cấu hình chỉ gồm chữ thường không dấu, số và dấu gạch ngang (2–63 ký tự)."
        )
    values = {"level": "B-T", "check_revocation": True, **values}
    fingerprint = _validate(services, values)
    profile = SigningProfile(agency_id=agency.id, name=name, **{k: values.get(k) for k in FIELDS})
    try:
        with services.db.transaction() as session:
            if (
                session.scalars(
                    select(SigningProfile.id).where(SigningProfile.name == name)
                ).first()
                is not None
            ):
                raise errors.ProfileExists()
            session.add(profile)
            session.flush()
            audit.append(
                session,
                actor=actor,
                action="profile.created",
                agency_code=agency.code,
                subject=name,
                details={
                    "key_source": profile.key_uri.split(":", 1)[0],
                    "level": profile.level,
                    "certificate_sha256": fingerprint,
                },
            )
    except IntegrityError:
        raise errors.ProfileExists() from None
    return ProfileView.of(profile, fingerprint)


def update_profile(
    services: Services, agency: Agency, name: str, changes: dict[str, Any], *, actor: str
) -> ProfileView:
    with services.db.transaction() as session:
        current = _get(session, agency, name)
        values = {k: getattr(current, k) for k in FIELDS}
    values.update({k: v for k, v in changes.items() if k in FIELDS})
    fingerprint = _validate(services, values)
    with services.db.transaction() as session:
        profile = _get(session, agency, name)
        for k in FIELDS:
            setattr(profile, k, values[k])
        audit.append(
            session,
            actor=actor,
            action="profile.updated",
            agency_code=agency.code,
            subject=name,
            details={
                "fields": sorted(k for k in changes if k in FIELDS),
                "certificate_sha256": fingerprint,
            },
        )
    return ProfileView.of(profile, fingerprint)


def disable_profile(services: Services, agency: Agency, name: str, *, actor: str) -> None:
    with services.db.transaction() as session:
        profile = _get(session, agency, name)
        profile.disabled_at = datetime.now(UTC)
        audit.append(
            session, actor=actor, action="profile.disabled", agency_code=agency.code, subject=name
        )
