"""Development bootstrap: two demo agencies, their seal profiles and one API key each.

Runs only in development mode, on a database without agencies. The keys are written to
``<data_dir>/dev-credentials.json`` (mode 0600); they exist nowhere else in clear.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from signing_service import audit
from signing_service.services.auth import new_api_key
from signing_service.store.models import Agency, ApiClient, SigningProfile

if TYPE_CHECKING:
    from signing_service.services.container import Services

DEMO_AGENCIES = (
    {
        "code": "000.00.12.H12",
        "name": "Sở Tư pháp tỉnh Demo A",
        "key": "agency-a-seal",
        "profile": "agency-a-seal",
        "location": "Tỉnh Demo A",
    },
    {
        "code": "000.00.31.H26",
        "name": "UBND xã Demo B",
        "key": "agency-b-seal",
        "profile": "agency-b-seal",
        "location": "Xã Demo B",
    },
)


def bootstrap_dev(services: Services) -> None:
    pki = services.dev_pki
    assert pki is not None
    with services.db.transaction() as session:
        if session.scalars(select(Agency.id).limit(1)).first() is not None:
            return
        out: dict[str, Any] = {
            "_note": "Development only. Production mode refuses to start with these agencies, "
            "profiles and keys.",
            "api_base_url": f"http://{services.settings.host}:{services.settings.port}",
            "agencies": [],
            "pki": {
                "root_certificate": str(pki.root_cert_path),
                "tsa_url": pki.tsa_url,
                "p12_passphrase_setting": "SIGNING_SERVICE_KEY_PASSPHRASE",
                "officer_p12": str(pki.p12_path("officer")),
                "officer_certificate": str(pki.cert_path("officer")),
                "revoked_signer_p12": str(pki.p12_path("revoked-signer")),
                "expired_signer_p12": str(pki.p12_path("expired-signer")),
            },
        }
        for spec in DEMO_AGENCIES:
            agency = Agency(code=spec["code"], name=spec["name"], dev=True)
            session.add(agency)
            session.flush()
            profile = SigningProfile(
                agency_id=agency.id,
                name=spec["profile"],
                key_uri=f"file:{pki.p12_path(spec['key'])}",
                level="B-T",
                tsa_url=pki.tsa_url,
                reason="Ký số văn bản",
                location=spec["location"],
                appearance={},
                check_revocation=True,
                dev=True,
            )
            session.add(profile)
            profile_names = [profile.name]
            if spec["key"] == "agency-a-seal" and services.dev_hsm_key is not None:
                # The same agency's seal, held on the SoftHSM2 token (PKCS#11).
                hsm_profile = SigningProfile(
                    agency_id=agency.id,
                    name="agency-a-hsm-seal",
                    key_uri=services.dev_hsm_key.uri(
                        pki.cert_path("agency-a-hsm"), pki.cert_path("interm")
                    ),
                    level="B-T",
                    tsa_url=pki.tsa_url,
                    reason="Ký số văn bản",
                    location=spec["location"],
                    appearance={},
                    check_revocation=True,
                    dev=True,
                )
                session.add(hsm_profile)
                profile_names.append(hsm_profile.name)
            if spec["key"] == "agency-a-seal":
                # Officers sign with their own keys (USB token): two-step signing.
                officer = SigningProfile(
                    agency_id=agency.id,
                    name="agency-a-officer",
                    key_uri="external:",
                    level="B-T",
                    tsa_url=pki.tsa_url,
                    reason="Ký duyệt văn bản",
                    location=spec["location"],
                    appearance={"heading": "Người ký"},
                    check_revocation=True,
                    dev=True,
                )
                session.add(officer)
                profile_names.append(officer.name)
            api_key, key_id, key_hash = new_api_key()
            session.add(
                ApiClient(agency_id=agency.id, name="demo client", key_id=key_id, key_hash=key_hash)
            )
            admin_key, admin_id, admin_hash = new_api_key()
            session.add(
                ApiClient(
                    agency_id=agency.id,
                    name="demo admin",
                    key_id=admin_id,
                    key_hash=admin_hash,
                    role="admin",
                )
            )

            audit.append(
                session,
                actor="bootstrap",
                action="agency.created",
                agency_code=agency.code,
                subject=agency.code,
                details={"profile": profile.name, "api_client": key_id},
            )
            out["agencies"].append(
                {
                    "code": agency.code,
                    "name": agency.name,
                    "api_key": api_key,
                    "admin_api_key": admin_key,
                    "profiles": profile_names,
                }
            )
        path = services.settings.dev_credentials_file
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(out, f, ensure_ascii=False, indent=2)
