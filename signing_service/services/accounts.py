"""Agencies and their API clients, managed by the operator from the command line (production
has no development bootstrap: this is how agencies and keys come to exist)."""

from __future__ import annotations

import re

from sqlalchemy import select

from signing_service import audit, errors
from signing_service.services.auth import new_api_key
from signing_service.services.container import Services
from signing_service.store.models import Agency, ApiClient

# Mã định danh cơ quan, e.g. 000.00.12.H12 (the agency part of a dossier code).
AGENCY_CODE = re.compile(r"^[0-9A-Z]{3}\.[0-9A-Z]{2}\.[0-9A-Z]{2}\.[0-9A-Z]{3}$")


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


def create_api_client(
    services: Services, agency_code: str, name: str, *, role: str, actor: str
) -> tuple[str, str]:
    """Returns (key id, full API key). The key is shown once; only its digest is stored."""
    if role not in ("client", "admin") or not name.strip():
        raise errors.InvalidRequest("Vai trò phải là client hoặc admin; tên không được trống.")
    api_key, key_id, key_hash = new_api_key()
    with services.db.transaction() as session:
        agency = session.scalars(select(Agency).where(Agency.code == agency_code)).first()
        if agency is None:
            raise errors.AgencyNotFound()
        session.add(
            ApiClient(
                agency_id=agency.id, name=name.strip(), key_id=key_id, key_hash=key_hash, role=role
            )
        )
        audit.append(
            session,
            actor=actor,
            action="api_client.created",
            agency_code=agency_code,
            subject=key_id,
            details={"name": name.strip(), "role": role},
        )
    return key_id, api_key
