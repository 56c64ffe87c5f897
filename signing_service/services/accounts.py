"""Agencies and API keys, managed by the platform operator (command line or operator API).

Production has no development bootstrap: this is how agencies and keys come to exist. An API
key's life: issued (its secret shown once, only a SHA-256 stored), optionally with an expiry;
listed (never with a secret); revoked (stops at once); rotated (a new key with a new secret is
issued for the same agency, name and role, and the old one keeps working until the overlap
ends, so the client system can switch without downtime). Every change is audited in the same
transaction: actor, key id, agency, never the secret.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from signing_service import audit, errors
from signing_service.services.auth import (
    AGENCY_ROLES,
    KEY_ID,
    OPERATOR_ROLE,
    ROLES,
    key_status,
    new_api_key,
)
from signing_service.services.container import Services
from signing_service.store.models import Agency, ApiClient
from signing_service.timefmt import api_time_or_none, aware_utc

# Mã định danh cơ quan, e.g. 000.00.12.H12 (the agency part of a dossier code).
AGENCY_CODE = re.compile(r"^[0-9A-Z]{3}\.[0-9A-Z]{2}\.[0-9A-Z]{2}\.[0-9A-Z]{3}$")
MAX_NAME = 255
# Bounds on what an operator may choose: an expiry of up to ten years, an overlap of up to 30
# days (a longer overlap is a second key in all but name).
MAX_EXPIRY_DAYS = 3650.0
MAX_OVERLAP_HOURS = 720.0
DEFAULT_OVERLAP_HOURS = 24.0


def create_agency(services: Services, code: str, name: str, *, actor: str) -> Agency:
    if not AGENCY_CODE.match(code) or not name.strip():
        raise errors.InvalidAgency()
    with services.db.transaction() as session:
        if session.scalars(select(Agency).where(Agency.code == code)).first() is not None:
            raise errors.AgencyExists()
        agency = Agency(code=code, name=name.strip(), dev=False)
        session.add(agency)
        session.flush()
        audit.append(
            session,
            actor=actor,
            action="agency.created",
            agency_code=code,
            subject=code,
            details={"name": agency.name},
        )
    return agency


def _time(moment: datetime | None) -> str | None:
    """A stored time for people and the API: ISO 8601 in +07:00."""
    return api_time_or_none(moment)


@dataclass(frozen=True)
class ApiKeyView:
    """An API key as listed: never its secret (nor its digest).

    ``status``: ``active``, ``overlap`` (rotated; works until ``expires_at``), ``expired`` or
    ``revoked``. Times are ISO 8601 in +07:00; ``agency_code`` is None for operator keys."""

    key_id: str
    name: str
    role: str
    agency_code: str | None
    status: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    replaced_by: str | None

    @classmethod
    def of(cls, client: ApiClient, agency_code: str | None, now: datetime) -> ApiKeyView:
        return cls(
            key_id=client.key_id,
            name=client.name,
            role=client.role,
            agency_code=agency_code,
            status=key_status(client, now),
            created_at=_time(client.created_at) or "",
            expires_at=_time(client.expires_at),
            revoked_at=_time(client.revoked_at),
            replaced_by=client.replaced_by,
        )


@dataclass(frozen=True)
class IssuedKey:
    """A newly issued key: ``api_key`` is the full key, to be shown once and never again."""

    key: ApiKeyView
    api_key: str


def _clean_name(name: str) -> str:
    """The key's display name, or :class:`errors.InvalidApiKeyRequest` (empty, too long, or
    carrying control characters such as NUL, which PostgreSQL cannot store)."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME or not cleaned.isprintable():
        raise errors.InvalidApiKeyRequest(
            f"Tên khóa API phải có từ 1 đến {MAX_NAME} ký tự in được."
        )
    return cleaned


def _bounded(
    value: float | None, low: float, high: float, what: str, *, above_low: bool = False
) -> float | None:
    """``value`` within [low, high] (``above_low``: (low, high]), else
    :class:`errors.InvalidApiKeyRequest` stating the rule (one message whichever side is
    crossed: red team F8 found "must be > 0" for 0 and "within 0–3650" for -5)."""
    if value is None:
        return None
    if not math.isfinite(value) or not low <= value <= high or (above_low and value == low):
        rule = (
            f"lớn hơn {low:g} và không quá {high:g}"
            if above_low
            else (f"nằm trong khoảng {low:g}–{high:g}")
        )
        raise errors.InvalidApiKeyRequest(f"{what} phải {rule}.")
    return value


def _agency_code(session: Session, client: ApiClient) -> str | None:
    if client.agency_id is None:
        return None
    return session.scalar(select(Agency.code).where(Agency.id == client.agency_id))


def issue_api_key(
    services: Services,
    *,
    agency_code: str | None,
    name: str,
    role: str,
    actor: str,
    expires_in_days: float | None = None,
) -> IssuedKey:
    """Issue a key: for an agency (role ``client`` or ``admin``, ``agency_code`` required) or
    for the platform operator (role ``operator``, no agency).

    ``expires_in_days`` (0 < d ≤ 3650, fractions allowed): the key stops working then.
    Raises :class:`errors.InvalidApiKeyRequest` (422) for a bad role, name, agency/role
    combination or expiry, :class:`errors.AgencyNotFound` (404). Audited as
    ``api_client.created``. Returns the key (shown once) and its listing."""
    if role not in ROLES:
        raise errors.InvalidApiKeyRequest("Vai trò phải là client, admin hoặc operator.")
    if (role == OPERATOR_ROLE) != (agency_code is None):
        raise errors.InvalidApiKeyRequest(
            "Khóa operator không thuộc cơ quan nào; khóa client/admin phải có mã cơ quan."
        )
    cleaned = _clean_name(name)
    days = _bounded(expires_in_days, 0.0, MAX_EXPIRY_DAYS, "Thời hạn (ngày)", above_low=True)
    now = datetime.now(UTC)
    api_key, key_id, key_hash = new_api_key()
    with services.db.transaction() as session:
        agency_id = None
        if agency_code is not None:
            _check_agency_code(agency_code)
            agency = session.scalars(select(Agency).where(Agency.code == agency_code)).first()
            if agency is None:
                raise errors.AgencyNotFound()
            agency_id = agency.id
        client = ApiClient(
            agency_id=agency_id,
            name=cleaned,
            key_id=key_id,
            key_hash=key_hash,
            role=role,
            created_at=now,
            expires_at=now + timedelta(days=days) if days is not None else None,
        )
        session.add(client)
        session.flush()
        view = ApiKeyView.of(client, agency_code, now)
        audit.append(
            session,
            actor=actor,
            action="api_client.created",
            agency_code=agency_code,
            subject=key_id,
            details={"name": cleaned, "role": role, "expires_at": view.expires_at},
        )
    return IssuedKey(view, api_key)


def create_api_client(
    services: Services,
    agency_code: str,
    name: str,
    *,
    role: str,
    actor: str,
    expires_in_days: float | None = None,
) -> tuple[str, str]:
    """An agency's key (role ``client`` or ``admin``): returns (key id, full API key), the key
    shown once. See :func:`issue_api_key`."""
    if role not in AGENCY_ROLES:
        raise errors.InvalidApiKeyRequest("Vai trò phải là client hoặc admin.")
    issued = issue_api_key(
        services,
        agency_code=agency_code,
        name=name,
        role=role,
        actor=actor,
        expires_in_days=expires_in_days,
    )
    return issued.key.key_id, issued.api_key


def create_operator_key(
    services: Services, name: str, *, actor: str, expires_in_days: float | None = None
) -> IssuedKey:
    """The platform operator's API key (role ``operator``, no agency). Only the command line
    calls this: an operator key cannot mint another one through the API."""
    return issue_api_key(
        services,
        agency_code=None,
        name=name,
        role=OPERATOR_ROLE,
        actor=actor,
        expires_in_days=expires_in_days,
    )


def list_api_keys(services: Services, *, agency_code: str | None = None) -> list[ApiKeyView]:
    """Every key (revoked and expired included, so the history stays visible), by agency then
    creation time; with ``agency_code``, that agency's keys only (:class:`errors.AgencyNotFound`
    when it does not exist). Never returns a secret or its digest."""
    now = datetime.now(UTC)
    with services.db.transaction() as session:
        stmt = select(ApiClient, Agency.code).outerjoin(Agency, Agency.id == ApiClient.agency_id)
        if agency_code is not None:
            _check_agency_code(agency_code)
            agency_id = session.scalar(select(Agency.id).where(Agency.code == agency_code))
            if agency_id is None:
                raise errors.AgencyNotFound()
            stmt = stmt.where(ApiClient.agency_id == agency_id)
        rows = session.execute(stmt.order_by(Agency.code, ApiClient.created_at, ApiClient.id))
        return [ApiKeyView.of(client, code, now) for client, code in rows]


def _check_agency_code(code: str) -> None:
    # Checked before any query: a NUL or an over-long value must not reach PostgreSQL.
    if not AGENCY_CODE.match(code):
        raise errors.InvalidAgency()


def _locked(session: Session, key_id: str) -> ApiClient:
    client = (
        session.scalars(
            select(ApiClient).where(ApiClient.key_id == key_id).with_for_update()
        ).first()
        if KEY_ID.fullmatch(key_id)
        else None
    )
    if client is None:
        raise errors.ApiKeyNotFound()
    return client


def revoke_api_key(services: Services, key_id: str, *, actor: str) -> ApiKeyView:
    """Revoke a key: it stops authenticating at once (401 ``UNAUTHENTICATED``), for good.

    Raises :class:`errors.ApiKeyNotFound` (404), :class:`errors.ApiKeyRevoked` (409) when it
    already is. An expired or rotated key may still be revoked (it ends an overlap early).
    Audited as ``api_client.revoked``."""
    now = datetime.now(UTC)
    with services.db.transaction() as session:
        client = _locked(session, key_id)
        if client.revoked_at is not None:
            raise errors.ApiKeyRevoked()
        client.revoked_at = now
        session.flush()
        code = _agency_code(session, client)
        audit.append(
            session,
            actor=actor,
            action="api_client.revoked",
            agency_code=code,
            subject=client.key_id,
            details={"name": client.name, "role": client.role},
        )
        return ApiKeyView.of(client, code, now)


def rotate_api_key(
    services: Services,
    key_id: str,
    *,
    actor: str,
    overlap_hours: float = DEFAULT_OVERLAP_HOURS,
    allow_operator: bool = True,
) -> tuple[IssuedKey, ApiKeyView]:
    """Replace a key with a new one (new key id and secret; same agency, name and role).

    The old key keeps working for ``overlap_hours`` (0–720, fractions allowed; 0: it stops at
    once), then answers 401 like an expired key. If the old key had an expiry, the new one gets
    the same lifetime from now. Raises :class:`errors.ApiKeyNotFound` (404),
    :class:`errors.ApiKeyRevoked` / :class:`errors.ApiKeyInactive` (409) for a revoked,
    expired or already rotated key, :class:`errors.OperatorKeyCliOnly` (403) for an operator
    key when ``allow_operator`` is false (the operator API: a stolen operator key must not be
    able to outlive its revocation by rotating itself), :class:`errors.InvalidApiKeyRequest`
    (422) for an overlap out of range. Audited as ``api_client.rotated``.

    Returns (the new key, shown once; the old key's listing)."""
    overlap = _bounded(overlap_hours, 0.0, MAX_OVERLAP_HOURS, "Thời gian chuyển tiếp (giờ)")
    assert overlap is not None
    now = datetime.now(UTC)
    api_key, new_key_id, key_hash = new_api_key()
    with services.db.transaction() as session:
        old = _locked(session, key_id)
        if old.role == OPERATOR_ROLE and not allow_operator:
            raise errors.OperatorKeyCliOnly()
        status = key_status(old, now)
        if status == "revoked":
            raise errors.ApiKeyRevoked()
        if status != "active":
            raise errors.ApiKeyInactive()
        lifetime = (
            aware_utc(old.expires_at) - aware_utc(old.created_at)
            if old.expires_at is not None
            else None
        )
        new = ApiClient(
            agency_id=old.agency_id,
            name=old.name,
            key_id=new_key_id,
            key_hash=key_hash,
            role=old.role,
            created_at=now,
            expires_at=now + lifetime if lifetime is not None else None,
        )
        session.add(new)
        overlap_end = now + timedelta(hours=overlap)
        if old.expires_at is None or aware_utc(old.expires_at) > overlap_end:
            old.expires_at = overlap_end
        old.replaced_by = new_key_id
        session.flush()
        code = _agency_code(session, old)
        old_view = ApiKeyView.of(old, code, now)
        new_view = ApiKeyView.of(new, code, now)
        audit.append(
            session,
            actor=actor,
            action="api_client.rotated",
            agency_code=code,
            subject=old.key_id,
            details={
                "name": old.name,
                "role": old.role,
                "new_key_id": new_key_id,
                "overlap_hours": overlap,
                "old_expires_at": old_view.expires_at,
                "new_expires_at": new_view.expires_at,
            },
        )
    return IssuedKey(new_view, api_key), old_view
