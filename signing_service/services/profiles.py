"""Signing profiles per agency, managed by the agency's admin key.

A profile chooses one of the agency's registered keys by name (or two-step signing with the
agency's registered officers), the PAdES level, a TSA by the name the operator configured it
under, reason, location and stamp. It names no file, module, URL or secret source: the operator
registers key material and configures the allowlists (issue 9). Profiles are validated whole
(:mod:`.profile_rules`) and their key's certificate is checked as before a signature (validity,
key usage, algorithm policy, chain, revocation) when they are saved: a profile that saves signs.
Names are unique per agency: another agency's profile names are never revealed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asn1crypto import x509
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from signing_service import audit, errors
from signing_service._async import run_sync
from signing_service.services import allowlists
from signing_service.services.appearance_images import check_image_names
from signing_service.services.container import Services
from signing_service.services.keys import (
    SIGNING_KINDS,
    SOURCE_NAMES,
    active_key,
    load_certificates,
)
from signing_service.services.profile_rules import PROFILE_NAME_PATTERN, ProfileSettings
from signing_service.services.signing import check_signer
from signing_service.signing.engine import EXTERNAL_LEVELS
from signing_service.signing.levels import SignatureLevel
from signing_service.store.models import Agency, SigningKey, SigningProfile
from signing_service.timefmt import api_time

FIELDS = ("key", "two_step", "level", "tsa", "reason", "location", "appearance")
_NAME = re.compile(PROFILE_NAME_PATTERN)


@dataclass(frozen=True)
class ProfileView:
    name: str
    key: str | None  # the registered key's name
    key_source: str  # file | pkcs11 | csc | external: never a path, module or URL
    two_step: bool
    level: str
    tsa: str | None  # the configured TSA's name (None: the default TSA)
    reason: str | None
    location: str | None
    appearance: dict[str, Any] | None
    certificate_sha256: str | None
    created_at: str

    @classmethod
    def of(cls, profile: SigningProfile, key: SigningKey | None) -> ProfileView:
        return cls(
            name=profile.name,
            key=key.name if key is not None else None,
            key_source=(
                "external"
                if profile.two_step
                else SOURCE_NAMES.get(key.kind, key.kind)
                if key is not None
                else "none"
            ),
            two_step=profile.two_step,
            level=profile.level,
            tsa=profile.tsa,
            reason=profile.reason,
            location=profile.location,
            appearance=profile.appearance,
            certificate_sha256=key.certificate_sha256.lower() if key is not None else None,
            created_at=api_time(profile.created_at),
        )


def _invalid(e: ValidationError) -> errors.ServiceError:
    fields = [".".join(str(p) for p in problem["loc"]) for problem in e.errors()]
    if "appearance.kind" in fields:
        # Its own code (issue 10): a client sending a kind of a newer version learns why.
        return errors.UnknownAppearanceKind(details={"fields": fields})
    return errors.InvalidProfile(details={"fields": fields})


def _validate(
    services: Services, session: Session, agency: Agency, settings: ProfileSettings
) -> SigningKey | None:
    """Refuse settings that could not sign; return the chosen key's row.

    Codes: ``UNKNOWN_TSA``, ``UNKNOWN_IMAGE`` (an appearance image the agency does not have),
    ``UNKNOWN_KEY`` (another agency's key answers the same), ``INVALID_PROFILE``, and the
    signer checks' (``SIGNER_CERT_REVOKED``…).
    """
    level = SignatureLevel.parse(settings.level)
    if settings.tsa is not None and settings.tsa not in allowlists.tsas(services):
        raise errors.UnknownTsa()
    if level.needs_timestamp:
        try:
            allowlists.tsa_url(services, settings.tsa)
        except errors.TimestampUnavailable:
            raise errors.InvalidProfile(
                "Mức B-T trở lên cần máy chủ dấu thời gian; đơn vị vận hành chưa cấu hình máy chủ "
                "nào."
            ) from None
    if settings.appearance is not None:
        check_image_names(session, agency.id, settings.appearance.model_dump())
    key = None
    if settings.key is not None:
        key = active_key(session, agency.id, name=settings.key)
        if key is None:
            raise errors.UnknownKey()
    if settings.two_step:
        if level not in EXTERNAL_LEVELS:
            raise errors.InvalidProfile("Ký hai bước hỗ trợ mức B-B và B-T.")
        if key is not None and key.kind != "officer":
            raise errors.InvalidProfile(
                "Ký hai bước dùng chứng thư của người ký đã đăng ký, không dùng khóa của cơ quan."
            )
    elif key is None:
        raise errors.InvalidProfile("Cần chọn khóa ký (key) trong các khóa đã đăng ký.")
    elif key.kind not in SIGNING_KINDS:
        raise errors.InvalidProfile(
            "Chứng thư của người ký chỉ dùng để ký hai bước (two_step: true)."
        )
    return key


def _check_key(services: Services, key: SigningKey | None) -> None:
    """The key's certificate still passes the checks before any signature."""
    if key is None:
        return
    chain = tuple(load_certificates(key.chain)) if key.chain else ()
    run_sync(check_signer(services, x509.Certificate.load(key.certificate), chain))


def _settings(profile: SigningProfile, key: SigningKey | None) -> dict[str, Any]:
    return {
        "key": key.name if key is not None else None,
        "two_step": profile.two_step,
        "level": profile.level,
        "tsa": profile.tsa,
        "reason": profile.reason,
        "location": profile.location,
        "appearance": _shown_appearance(profile.appearance),
    }


# The older text stamp's own fields: a profile with a kind neither uses nor shows them (new
# user 11: the "sao-y" copy profile answered heading/width/height/font_size it never draws).
TEXT_STAMP_ONLY = frozenset({"heading", "width", "height", "font_size"})


def _shown_appearance(appearance: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored appearance as answered: without :data:`TEXT_STAMP_ONLY` when it has a kind."""
    if not appearance or appearance.get("kind") is None:
        return appearance
    return {k: v for k, v in appearance.items() if k not in TEXT_STAMP_ONLY}


def _apply(profile: SigningProfile, settings: ProfileSettings, key: SigningKey | None) -> None:
    profile.key_id = key.id if key is not None else None
    profile.two_step = settings.two_step
    profile.level = settings.level
    profile.tsa = settings.tsa
    profile.reason = settings.reason
    profile.location = settings.location
    profile.appearance = (
        # Unset options are left out: a profile saved before kinds reads back as it was.
        _shown_appearance(settings.appearance.model_dump(exclude_none=True))
        if settings.appearance is not None
        else None
    )


def _key_of(session: Session, profile: SigningProfile) -> SigningKey | None:
    if profile.key_id is None:
        return None
    return session.scalars(
        select(SigningKey).where(
            SigningKey.id == profile.key_id, SigningKey.agency_id == profile.agency_id
        )
    ).first()


def list_profiles(services: Services, agency: Agency) -> list[ProfileView]:
    with services.db.transaction() as session:
        rows = session.execute(
            select(SigningProfile, SigningKey)
            .outerjoin(
                SigningKey,
                (SigningKey.id == SigningProfile.key_id)
                & (SigningKey.agency_id == SigningProfile.agency_id),
            )
            .where(SigningProfile.agency_id == agency.id, SigningProfile.disabled_at.is_(None))
            .order_by(SigningProfile.name)
        ).all()
        return [ProfileView.of(p, k) for p, k in rows]


def _get(session: Session, agency: Agency, name: str) -> SigningProfile:
    # A name that cannot exist is not looked up (no NUL or overlong text reaches the database).
    profile = (
        session.scalars(
            select(SigningProfile).where(
                SigningProfile.agency_id == agency.id,
                SigningProfile.name == name,
                SigningProfile.disabled_at.is_(None),
            )
        ).first()
        if _NAME.match(name)
        else None
    )
    if profile is None:
        raise errors.ProfileNotFound()
    return profile


def get_profile(services: Services, agency: Agency, name: str) -> ProfileView:
    with services.db.transaction() as session:
        profile = _get(session, agency, name)
        return ProfileView.of(profile, _key_of(session, profile))


def create_profile(
    services: Services, agency: Agency, values: dict[str, Any], *, actor: str
) -> ProfileView:
    """Create profile ``values["name"]`` from ``values`` (the fields of
    :class:`~.profile_rules.NewProfile`), validated whole; its key checked before it is saved.
    Raises ``PROFILE_EXISTS`` (409) only for a name the same agency already uses."""
    values = dict(values)
    name = values.pop("name", "")
    if not isinstance(name, str) or not _NAME.match(name):
        raise errors.InvalidProfile(
            "Tên cấu hình chỉ gồm chữ thường không dấu, số và dấu gạch ngang (2–63 ký tự)."
        )
    try:
        settings = ProfileSettings.model_validate(values)
    except ValidationError as e:
        raise _invalid(e) from None
    with services.db.transaction() as session:
        key = _validate(services, session, agency, settings)
    _check_key(services, key)
    profile = SigningProfile(agency_id=agency.id, name=name, dev=False)
    _apply(profile, settings, key)
    try:
        with services.db.transaction() as session:
            taken = session.scalars(
                select(SigningProfile.id).where(
                    SigningProfile.agency_id == agency.id, SigningProfile.name == name
                )
            ).first()
            if taken is not None:
                raise errors.ProfileExists()
            # The key may have been disabled meanwhile: validated again in this transaction.
            key = _validate(services, session, agency, settings)
            profile.key_id = key.id if key is not None else None
            session.add(profile)
            session.flush()
            audit.append(
                session,
                actor=actor,
                action="profile.created",
                agency_code=agency.code,
                subject=name,
                details={
                    "key_name": settings.key,
                    "two_step": settings.two_step,
                    "level": settings.level,
                    "tsa": settings.tsa,
                    "certificate_sha256": key.certificate_sha256 if key is not None else None,
                },
            )
            return ProfileView.of(profile, key)
    except IntegrityError:
        raise errors.ProfileExists() from None


def update_profile(
    services: Services, agency: Agency, name: str, changes: dict[str, Any], *, actor: str
) -> ProfileView:
    """Apply ``changes`` (the fields sent) to profile ``name``; the result is validated whole
    and its key checked, as at creation."""
    with services.db.transaction() as session:
        current = _get(session, agency, name)
        merged = _settings(current, _key_of(session, current))
    merged.update({k: v for k, v in changes.items() if k in FIELDS})
    try:
        settings = ProfileSettings.model_validate(merged)
    except ValidationError as e:
        raise _invalid(e) from None
    with services.db.transaction() as session:
        key = _validate(services, session, agency, settings)
    _check_key(services, key)
    with services.db.transaction() as session:
        profile = _get(session, agency, name)
        key = _validate(services, session, agency, settings)
        _apply(profile, settings, key)
        audit.append(
            session,
            actor=actor,
            action="profile.updated",
            agency_code=agency.code,
            subject=name,
            details={
                "fields": sorted(k for k in changes if k in FIELDS),
                "key_name": settings.key,
                "certificate_sha256": key.certificate_sha256 if key is not None else None,
            },
        )
        return ProfileView.of(profile, key)


def disable_profile(services: Services, agency: Agency, name: str, *, actor: str) -> None:
    with services.db.transaction() as session:
        profile = _get(session, agency, name)
        profile.disabled_at = datetime.now(UTC)
        audit.append(
            session, actor=actor, action="profile.disabled", agency_code=agency.code, subject=name
        )
