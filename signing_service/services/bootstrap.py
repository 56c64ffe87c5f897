"""Development bootstrap: two demo agencies, their keys (registered through the key registry,
as an operator would), their signing profiles and one client and one admin API key each.

Runs only in development mode. Agencies and API keys are created once, on a database without
agencies; the keys are written to ``<data_dir>/dev-credentials.json`` (mode 0600) and exist
nowhere else in clear. The demo keys and profiles are then ensured on every start: missing ones
are registered or created, and a demo profile left without a key (by migration 0006, which
drops the old key URIs) gets its key back. Registration runs the real checks (key against
certificate, chain, revocation), so the dev PKI is served for the duration when nothing else
serves it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asn1crypto import x509
from sqlalchemy import select

from signing_service import audit, errors
from signing_service.services.auth import new_api_key
from signing_service.store.models import Agency, ApiClient, SigningKey, SigningProfile

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from signing_service.services.container import Services
    from signing_service.services.keys import Material
    from signing_service.settings import Settings


@dataclass(frozen=True)
class DemoProfile:
    name: str
    key: str | None
    reason: str
    appearance: dict[str, Any]
    two_step: bool = False


@dataclass(frozen=True)
class DemoAgency:
    code: str
    name: str
    location: str
    profiles: tuple[DemoProfile, ...] = field(default_factory=tuple)


DEMO_AGENCIES = (
    DemoAgency(
        code="000.00.12.H12",
        name="Sở Tư pháp tỉnh Demo A",
        location="Tỉnh Demo A",
        profiles=(
            DemoProfile("agency-a-seal", "agency-a-seal", "Ký số văn bản", {}),
            # The same agency's seal, held on the SoftHSM2 token (PKCS#11).
            DemoProfile("agency-a-hsm-seal", "agency-a-hsm-seal", "Ký số văn bản", {}),
            # Officers sign with their own keys (USB token): two-step signing, any officer
            # the operator registered for the agency.
            DemoProfile(
                "agency-a-officer", None, "Ký duyệt văn bản", {"heading": "Người ký"}, True
            ),
        ),
    ),
    DemoAgency(
        code="000.00.31.H26",
        name="UBND xã Demo B",
        location="Xã Demo B",
        profiles=(DemoProfile("agency-b-seal", "agency-b-seal", "Ký số văn bản", {}),),
    ),
)
# The officer certificate registered for agency A (Nguyễn Văn An, Phó Giám đốc).
DEMO_OFFICER = "nguyen-van-an"


def _demo_keys(services: Services, code: str) -> dict[str, Material]:
    """The demo keys of agency ``code``, as ``key add`` would be given them."""
    from signing_service.services.keys import OfficerMaterial, Pkcs11Material, Pkcs12Material

    pki = services.dev_pki
    assert pki is not None
    passphrase = services.settings.key_passphrase.get_secret_value().encode()
    if code == DEMO_AGENCIES[1].code:
        return {
            "agency-b-seal": Pkcs12Material(pki.p12_path("agency-b-seal").read_bytes(), passphrase)
        }
    keys: dict[str, Material] = {
        "agency-a-seal": Pkcs12Material(pki.p12_path("agency-a-seal").read_bytes(), passphrase),
        DEMO_OFFICER: OfficerMaterial(pki.cert_path("officer").read_bytes()),
    }
    hsm = services.dev_hsm_key
    if hsm is not None:
        from signing_service.services.allowlists import DEV_PKCS11_MODULE

        keys["agency-a-hsm-seal"] = Pkcs11Material(
            uri=f"pkcs11:token={hsm.token};object={hsm.key_label}",
            module=DEV_PKCS11_MODULE,
            pin=hsm.pin_file.read_text().strip(),
            certificate=pki.cert_path("agency-a-hsm").read_bytes(),
            chain=pki.cert_path("interm").read_bytes(),
        )
    return keys


def check_new_sqlite_database(settings: Settings) -> None:
    """Before a development command creates an SQLite file that does not exist yet: the same
    refusal as :func:`check_credentials_owner`, before anything is created."""
    from sqlalchemy import make_url

    if settings.is_production or not settings.effective_database_url.startswith("sqlite"):
        return
    database = make_url(settings.effective_database_url).database
    if database and not Path(database).exists():
        check_credentials_owner(settings)


def database_label(url: str) -> str:
    """The database a credentials file belongs to: its URL without the password."""
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


def check_credentials_owner(settings: Settings) -> None:
    """Refuse to create a second demo world whose keys would overwrite the credentials of
    another database (red team F8: a CLI command with a mistyped SIGNING_SERVICE_DATABASE_URL
    bootstrapped a new database and rewrote dev-credentials.json, so the running instance's
    API keys, which exist nowhere else in clear, were lost). A file written before the
    database was recorded in it belongs to the default database of the data directory.
    Raises :class:`errors.ConfigurationError` naming the setting; nothing is written."""
    from signing_service import errors

    path = settings.dev_credentials_file
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("database")
    except FileNotFoundError:
        return
    except (OSError, ValueError, AttributeError):
        recorded = None  # unreadable: still somebody's keys, keep it
    default = f"sqlite:///{settings.resolved_data_dir / 'metadata.db'}"
    owner = recorded or database_label(default)
    if owner == database_label(settings.effective_database_url):
        return  # the same database, recreated: its old keys are gone with it
    raise errors.ConfigurationError(
        "Cấu hình không hợp lệ: SIGNING_SERVICE_DATABASE_URL: cơ sở dữ liệu "
        f"{database_label(settings.effective_database_url)} chưa có cơ quan nào, còn {path} "
        f"giữ khóa API của cơ sở dữ liệu khác ({owner}); không tạo dữ liệu thử nghiệm mới để "
        "khỏi ghi đè các khóa đó. Kiểm tra lại địa chỉ (gõ nhầm?), hoặc dùng "
        "SIGNING_SERVICE_DATA_DIR khác cho cơ sở dữ liệu này, hoặc chuyển tệp kia đi nếu "
        "không còn dùng cơ sở dữ liệu cũ."
    )


def bootstrap_dev(services: Services) -> None:
    """Create the demo agencies and API keys once; ensure their keys and profiles. Raises
    :class:`errors.ConfigurationError` when the database is new but the data directory's
    credentials file belongs to another database (see :func:`check_credentials_owner`)."""
    assert services.dev_pki is not None
    credentials = _create_agencies(services)
    for demo in DEMO_AGENCIES:
        _ensure_keys_and_profiles(services, demo)
    if credentials is not None:
        for entry in credentials["agencies"]:
            entry["keys"] = [k.name for k in _active_keys(services, entry["code"])]
        path = services.settings.dev_credentials_file
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(credentials, f, ensure_ascii=False, indent=2)


def _create_agencies(services: Services) -> dict[str, Any] | None:
    pki = services.dev_pki
    assert pki is not None
    with services.db.transaction() as session:
        if session.scalars(select(Agency.id).limit(1)).first() is not None:
            return None
        check_credentials_owner(services.settings)
        out: dict[str, Any] = {
            "_note": "Development only. Production mode refuses to start with these agencies, "
            "profiles and keys.",
            "database": database_label(services.settings.effective_database_url),
            "api_base_url": f"http://{services.settings.host}:{services.settings.port}",
            "agencies": [],
            "pki": {
                "root_certificate": str(pki.root_cert_path),
                "tsa_url": pki.tsa_url,
                "p12_passphrase_setting": "SIGNING_SERVICE_KEY_PASSPHRASE",
                "officer_p12": str(pki.p12_path("officer")),
                # Not registered: try `signing-service key add --pkcs12` with it.
                "unregistered_p12": str(pki.p12_path("spare-seal")),
                "officer_certificate": str(pki.cert_path("officer")),
                "revoked_signer_p12": str(pki.p12_path("revoked-signer")),
                "expired_signer_p12": str(pki.p12_path("expired-signer")),
            },
        }
        for demo in DEMO_AGENCIES:
            agency = Agency(code=demo.code, name=demo.name, dev=True)
            session.add(agency)
            session.flush()
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
                details={"api_client": key_id, "admin_api_client": admin_id},
            )
            profiles = [
                p.name
                for p in demo.profiles
                if services.dev_hsm_key is not None or p.name != "agency-a-hsm-seal"
            ]
            out["agencies"].append(
                {
                    "code": agency.code,
                    "name": agency.name,
                    "api_key": api_key,
                    "admin_api_key": admin_key,
                    "profiles": profiles,
                }
            )
        return out


def _active_keys(services: Services, code: str) -> list[SigningKey]:
    with services.db.transaction() as session:
        return list(
            session.scalars(
                select(SigningKey)
                .join(Agency, Agency.id == SigningKey.agency_id)
                .where(Agency.code == code, SigningKey.disabled_at.is_(None))
                .order_by(SigningKey.name)
            ).all()
        )


def _ensure_keys_and_profiles(services: Services, demo: DemoAgency) -> None:
    from signing_service.services.keys import register_key

    with services.db.transaction() as session:
        agency = session.scalars(select(Agency).where(Agency.code == demo.code, Agency.dev)).first()
        if agency is None:
            return
        agency_id = agency.id
        named = set(
            session.scalars(select(SigningKey.name).where(SigningKey.agency_id == agency_id))
        )
    wanted = [p.key for p in demo.profiles if p.key is not None]
    if demo.code == DEMO_AGENCIES[0].code:
        wanted.append(DEMO_OFFICER)
    if services.dev_hsm_key is None:
        wanted = [name for name in wanted if name != "agency-a-hsm-seal"]
    missing = [name for name in wanted if name not in named]
    if missing:
        materials = _demo_keys(services, demo.code)
        with _dev_pki_served(services):
            for name in missing:
                register_key(
                    services,
                    agency_code=demo.code,
                    name=name,
                    material=materials[name],
                    actor="bootstrap",
                    dev=True,
                )
    _renew_certificates(services, demo, [name for name in wanted if name in named])
    keys = {k.name: k for k in _active_keys(services, demo.code)}
    with services.db.transaction() as session:
        for spec in demo.profiles:
            key = keys.get(spec.key) if spec.key is not None else None
            if spec.key is not None and key is None:
                continue  # e.g. no SoftHSM2 here: no HSM profile
            profile = session.scalars(
                select(SigningProfile).where(
                    SigningProfile.agency_id == agency_id, SigningProfile.name == spec.name
                )
            ).first()
            if profile is None:
                session.add(
                    SigningProfile(
                        agency_id=agency_id,
                        name=spec.name,
                        key_id=key.id if key is not None else None,
                        two_step=spec.two_step,
                        level="B-T",
                        tsa=None,
                        reason=spec.reason,
                        location=demo.location,
                        appearance=spec.appearance,
                        dev=True,
                    )
                )
                audit.append(
                    session,
                    actor="bootstrap",
                    action="profile.created",
                    agency_code=demo.code,
                    subject=spec.name,
                    details={"key_name": spec.key, "two_step": spec.two_step, "level": "B-T"},
                )
            elif profile.dev and key is not None and profile.key_id is None:
                # Left without a key by migration 0006: the demo key again.
                profile.key_id = key.id
                audit.append(
                    session,
                    actor="bootstrap",
                    action="profile.updated",
                    agency_code=demo.code,
                    subject=spec.name,
                    details={"fields": ["key"], "key_name": spec.key},
                )


# The dev PKI certificate of each demo key (its label in certs/dev/certomancer.yml).
DEV_CERTIFICATES = {
    "agency-a-seal": "agency-a-seal",
    "agency-a-hsm-seal": "agency-a-hsm",
    "agency-b-seal": "agency-b-seal",
    DEMO_OFFICER: "officer",
}


def _renew_certificates(services: Services, demo: DemoAgency, names: list[str]) -> None:
    """Demo keys ``names`` of ``demo`` registered with an earlier generation of the dev PKI
    (re-issued for another port since: ``DevPki.generation``) get its current certificate,
    through :func:`~signing_service.services.keys.renew_certificate` (checked and audited as
    an operator's change, actor ``bootstrap``). Only keys flagged dev whose registered public
    key is the dev PKI's own key for that certificate: anything else is an operator's key,
    left alone. New user 14 F9: the registry kept the old certificates, whose OCSP responder
    (the old port) no longer answers, so every signature was refused 503
    ``SIGNER_CERT_STATUS_UNKNOWN``."""
    from signing_service.services.keys import renew_certificate

    pki = services.dev_pki
    assert pki is not None
    rows = {k.name: k for k in _active_keys(services, demo.code) if k.dev}
    stale = []
    for name in names:
        row, label = rows.get(name), DEV_CERTIFICATES.get(name)
        if row is None or label is None:
            continue
        current = pki.cert(label)
        if row.certificate == current.dump():
            continue
        registered = x509.Certificate.load(row.certificate)
        if registered.public_key.dump() == current.public_key.dump():
            stale.append(name)
    if not stale:
        return
    materials = _demo_keys(services, demo.code)
    with _dev_pki_served(services):
        for name in stale:
            try:
                renew_certificate(
                    services,
                    agency_code=demo.code,
                    name=name,
                    material=materials[name],
                    actor="bootstrap",
                    reason=f"dev_pki_reissued:{pki.url_prefix}",
                )
            except errors.ServiceError as e:
                # The start goes on, the row unchanged: signing with this key is refused as
                # before (SIGNER_CERT_STATUS_UNKNOWN…) until a later start renews it.
                log.warning(
                    "Không cập nhật được chứng thư mới của khóa thử nghiệm %s (%s): %s",
                    name,
                    demo.code,
                    e.code,
                )


@contextlib.contextmanager
def _dev_pki_served(services: Services) -> Iterator[None]:
    """The dev PKI's TSA/OCSP/CRL answering on its port for the duration (started here when
    nothing answers there)."""
    settings = services.settings
    pki = services.dev_pki
    assert pki is not None
    try:
        socket.create_connection((settings.dev_pki_host, settings.dev_pki_port), timeout=1).close()
    except OSError:
        from signing_service.pki.dev import DevPkiServer

        server = DevPkiServer(pki, settings.dev_pki_host, settings.dev_pki_port).start()
        try:
            yield
        finally:
            server.stop()
        return
    yield
