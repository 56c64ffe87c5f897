"""The key registry: keys the platform operator registers for one agency, and opening them.

Only the operator registers key material (``signing-service key add``, :func:`register_key`):
a PKCS#12 file (copied into the key store, sealed under a data key of its own), a key on an HSM
through a configured PKCS#11 module, a credential at a configured remote signing provider, or
an officer's own certificate for two-step signing. Each is checked before it is stored: the key
against its certificate, the certificate against the trust store (chain to an anchor, validity,
revocation), the algorithm policy and key usage, and it must be an end-entity certificate. A
key belongs to one agency; an agency administrator's profile names one of its own agency's keys
by name, and the key of another agency is indistinguishable from a key that does not exist.
Every registration, refusal and disablement is an audit entry.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from asn1crypto import pem, x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from signing_service import audit, errors
from signing_service._async import run_sync
from signing_service.services import allowlists
from signing_service.services.container import Services
from signing_service.services.keystore import KeyStore, binding
from signing_service.signing.keys.base import (
    KeySourceError,
    KeySpec,
    LoadedKey,
    is_ca_certificate,
    sha256_fingerprint,
)
from signing_service.store.models import Agency, SigningKey, SigningProfile, new_id
from signing_service.timefmt import api_time, api_time_or_none
from signing_service.verification.identity import (
    organisation_names,
    same_organisation,
    vietnamese_dn,
)

if TYPE_CHECKING:
    from signing_service.signing.keys.csc import CscCredential

log = logging.getLogger(__name__)

KEY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
CREDENTIAL_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
KINDS = ("pkcs12", "pkcs11", "csc", "officer")
SIGNING_KINDS = ("pkcs12", "pkcs11", "csc")
# How each kind is called where people see it (profiles keep the former source names).
SOURCE_NAMES = {"pkcs12": "file", "pkcs11": "pkcs11", "csc": "csc", "officer": "external"}

KEY_ERRORS: dict[str, type[errors.ServiceError]] = {
    "remote_authorization_required": errors.RemoteAuthorizationRequired,
    "remote_authorization_failed": errors.RemoteAuthorizationFailed,
    "remote_unavailable": errors.RemoteSigningUnavailable,
    "pin_incorrect": errors.KeyPinIncorrect,
    "token_not_found": errors.KeyTokenNotFound,
    "key_not_found": errors.KeyNotFound,
    "certificate_mismatch": errors.KeyCertificateMismatch,
    "invalid_reference": errors.InvalidKeyReference,
    "unreadable": errors.KeyUnreadable,
}


def key_error(e: KeySourceError) -> errors.ServiceError:
    """The service error for a key source's failure (its reason's code)."""
    return KEY_ERRORS.get(e.reason, errors.KeyUnavailable)()


# What the operator hands to ``key add``, one class per kind.
@dataclass(frozen=True)
class Pkcs12Material:
    """A PKCS#12 file's bytes and its passphrase (asked for once, never stored)."""

    data: bytes
    passphrase: bytes


@dataclass(frozen=True)
class Pkcs11Material:
    """``pkcs11:token=…;object=…`` on configured module ``module`` (None: the only one
    configured), the token's ``pin``, and optionally the certificate (else read from the token)
    and its chain, as PEM/DER bytes."""

    uri: str
    module: str | None
    pin: str
    certificate: bytes | None = None
    chain: bytes | None = None


@dataclass(frozen=True)
class CscMaterial:
    """Credential ``credential`` at configured provider ``provider``."""

    provider: str
    credential: str


@dataclass(frozen=True)
class OfficerMaterial:
    """An officer's certificate (PEM/DER; a PEM may carry its chain after it)."""

    certificate: bytes


Material = Pkcs12Material | Pkcs11Material | CscMaterial | OfficerMaterial


@dataclass(frozen=True)
class KeyView:
    """A registered key as people and the API see it: no secret, no path."""

    agency_code: str
    name: str
    kind: str
    source: str | None  # the configured module or provider name (operator views only)
    subject: str
    certificate_sha256: str
    not_after: str
    created_at: str
    disabled_at: str | None
    dev: bool

    @classmethod
    def of(cls, row: SigningKey, agency_code: str) -> KeyView:
        cert = x509.Certificate.load(row.certificate)
        reference = row.reference or {}
        return cls(
            agency_code=agency_code,
            name=row.name,
            kind=row.kind,
            source=reference.get("module") or reference.get("provider"),
            subject=vietnamese_dn(cert.subject),
            # Shown lower-case like every SHA-256 (the registry column keeps its own form).
            certificate_sha256=row.certificate_sha256.lower(),
            not_after=api_time(cert["tbs_certificate"]["validity"]["not_after"].native),
            created_at=api_time(row.created_at),
            disabled_at=api_time_or_none(row.disabled_at),
            dev=row.dev,
        )


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from PEM (one or more) or DER bytes; ``ValueError`` when unreadable."""
    try:
        if pem.detect(data):
            certs = [x509.Certificate.load(der) for _, _, der in pem.unarmor(data, multiple=True)]
        else:
            certs = [x509.Certificate.load(data)]
        for cert in certs:
            cert.native  # noqa: B018 - force a full parse
    except (ValueError, TypeError, OSError) as e:
        raise ValueError(f"unreadable certificate: {type(e).__name__}") from None
    if not certs:
        raise ValueError("no certificate")
    return certs


def pem_chain(certs: tuple[x509.Certificate, ...] | list[x509.Certificate]) -> bytes:
    return b"".join(pem.armor("CERTIFICATE", c.dump()) for c in certs)


def issuer_chain(
    services: Services, cert: x509.Certificate, given: tuple[x509.Certificate, ...] = ()
) -> tuple[x509.Certificate, ...]:
    """The intermediates to embed for ``cert``: walked up through ``given`` and the trust
    store's intermediates, stopping below an anchor."""
    known = [*given, *services.trust.intermediates]
    chain: list[x509.Certificate] = []
    current = cert
    for _ in range(8):
        issuer = next(
            (c for c in known if c.subject == current.issuer and c.sha256 != current.sha256), None
        )
        if issuer is None or services.trust.is_anchor(issuer):
            break
        chain.append(issuer)
        current = issuer
    return tuple(chain)


@dataclass(frozen=True)
class _Checked:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    reference: dict[str, str]
    secret: bytes | None  # what the key store seals (PKCS#12 material, the PIN)


def _prepare(services: Services, material: Material, name: str) -> _Checked:
    """Read the material and check the key against its certificate (kind by kind)."""
    if isinstance(material, Pkcs12Material):
        from signing_service.signing.keys.pkcs12 import read_pkcs12, repack

        try:
            content = read_pkcs12(material.data, material.passphrase)
        except KeySourceError as e:
            raise key_error(e) from None
        if not content.key_matches_certificate():
            raise errors.KeyCertificateMismatch()
        # The file's own chain is embedded as it comes (as before the registry).
        chain = content.chain or issuer_chain(services, content.certificate)
        return _Checked(content.certificate, chain, {}, repack(content, name))
    if isinstance(material, Pkcs11Material):
        from signing_service.signing.keys.pkcs11 import Pkcs11Reference, open_reference

        modules = allowlists.pkcs11_modules(services)
        module = material.module
        if module is None and len(modules) == 1:
            module = next(iter(modules))
        if module is None or module not in modules:
            raise errors.UnknownPkcs11Module()
        try:
            ref = Pkcs11Reference.parse(material.uri)
            given: list[x509.Certificate] = []
            cert = None
            if material.certificate is not None:
                cert, *given = load_certificates(material.certificate)
            if material.chain is not None:
                given += load_certificates(material.chain)
        except ValueError:
            raise errors.KeyUnreadable() from None
        except KeySourceError as e:
            raise key_error(e) from None
        try:
            loaded = open_reference(modules[module], ref, material.pin, cert, tuple(given))
        except KeySourceError as e:
            raise key_error(e) from None
        chain = issuer_chain(services, loaded.signing_cert, tuple(given))
        reference = {"module": module, **ref.params()}
        return _Checked(loaded.signing_cert, chain, reference, material.pin.encode())
    if isinstance(material, CscMaterial):
        from signing_service.signing.keys.csc import fetch_credential

        provider = allowlists.csc_providers(services).get(material.provider)
        if provider is None:
            raise errors.UnknownCscProvider()
        if not CREDENTIAL_ID.match(material.credential):
            raise errors.InvalidKeyReference()
        try:
            credential = _csc_credential(material.provider, material.credential, services)
            certs = fetch_credential(credential)
        except KeySourceError as e:
            raise key_error(e) from None
        chain = issuer_chain(services, certs[0], certs[1:])
        reference = {"provider": material.provider, "credential": material.credential}
        return _Checked(certs[0], chain, reference, None)
    try:
        cert, *given = load_certificates(material.certificate)
    except ValueError:
        raise errors.KeyUnreadable() from None
    return _Checked(cert, issuer_chain(services, cert, tuple(given)), {}, None)


def _kind(material: Material) -> str:
    return {
        Pkcs12Material: "pkcs12",
        Pkcs11Material: "pkcs11",
        CscMaterial: "csc",
        OfficerMaterial: "officer",
    }[type(material)]


def _check_certificate(services: Services, checked: _Checked) -> None:
    """End entity, then the checks before any signature: validity, key usage, algorithm
    policy, chain to a trust anchor and revocation (OCSP, else CRL)."""
    from signing_service.services.signing import check_signer

    if is_ca_certificate(checked.certificate):
        # A CA certificate issues certificates; it is never an officer's or a seal's
        # (issue 9: a CA certificate was accepted as an officer's certificate).
        raise errors.CertificateIsCa()
    run_sync(check_signer(services, checked.certificate, checked.chain))


def check_organisation(certificate: x509.Certificate, agency_name: str) -> list[str]:
    """The organisation (O) values of ``certificate``'s subject; raises
    :class:`errors.KeyOrganizationMismatch` (with both names in its message) unless one of
    them is ``agency_name`` (:func:`~signing_service.verification.identity.same_organisation`:
    NFC, case folded, whitespace collapsed). A certificate with no O names no agency and is
    refused too: the verification page says "văn bản <agency> đã cấp" for what the key signs
    (new user 12 item 2: a commune's seal registered to a provincial department)."""
    found = organisation_names(certificate.subject)
    if any(same_organisation(o, agency_name) for o in found):
        return found
    named = "; ".join(found) if found else "(không có)"
    raise errors.KeyOrganizationMismatch(
        f"Chứng thư số mang tên tổ chức {named}, không phải cơ quan {agency_name}. "
        "Chỉ đăng ký khi đã xác minh đây đúng là khóa của cơ quan: thêm "
        '--allow-other-organization "LÝ DO" (được ghi vào nhật ký kiểm toán).',
        details={"certificate_organization": found, "agency_name": agency_name},
    )


def register_key(
    services: Services,
    *,
    agency_code: str,
    name: str,
    material: Material,
    actor: str,
    dev: bool = False,
    other_organisation_reason: str | None = None,
) -> KeyView:
    """Check ``material`` and register it as key ``name`` of agency ``agency_code``.

    Raises (each with its code): :class:`errors.InvalidKeyName`, :class:`errors.AgencyNotFound`,
    :class:`errors.KeyExists` (the agency has that name, active or disabled),
    :class:`errors.KeyAlreadyRegistered` (an active key has this certificate), the material's
    own (``KEY_UNREADABLE``, ``KEY_CERTIFICATE_MISMATCH``, ``UNKNOWN_PKCS11_MODULE``,
    ``UNKNOWN_CSC_PROVIDER``, ``INVALID_KEY_REFERENCE``, ``KEY_PIN_INCORRECT``…),
    :class:`errors.CertificateIsCa`, and the signer checks' (``SIGNER_CERT_REVOKED``…). A
    refusal for an existing agency is audited (``key.refused``) and stores nothing.

    The certificate's subject organisation must be the agency's name
    (:func:`check_organisation`, ``KEY_ORGANIZATION_MISMATCH``) unless
    ``other_organisation_reason`` (the operator's non-empty reason, at most 500 characters)
    is given: then the key is registered and the audit entry ``key.registered`` keeps the
    reason and both names (``organization_override``).
    """
    reason = (other_organisation_reason or "").strip() or None
    if other_organisation_reason is not None and reason is None:
        raise errors.KeyOrganizationMismatch(
            "Cần lý do (không để trống) khi đăng ký chứng thư mang tên tổ chức khác."
        )
    kind = _kind(material)
    # A key whose secret the service keeps needs the master secret: refused before anything
    # is read or fetched when it is missing (ConfigurationError, exit 6 at the command line).
    store = KeyStore.of(services) if kind in ("pkcs12", "pkcs11") else None
    with services.db.transaction() as session:
        agency = session.scalars(select(Agency).where(Agency.code == agency_code)).first()
        if agency is None:
            raise errors.AgencyNotFound()
        agency_id = agency.id
        agency_name = agency.name
    override: dict[str, object] | None = None
    try:
        if not KEY_NAME.match(name):
            raise errors.InvalidKeyName()
        with services.db.transaction() as session:
            _check_name_free(session, agency_id, name)
        checked = _prepare(services, material, name)
        _check_certificate(services, checked)
        fingerprint = sha256_fingerprint(checked.certificate)
        with services.db.transaction() as session:
            _check_name_free(session, agency_id, name)
            _check_not_registered(session, fingerprint)
        # After the duplicate check: a certificate of another agency's active key is
        # that refusal (KEY_ALREADY_REGISTERED), whatever its organisation.
        try:
            check_organisation(checked.certificate, agency_name)
        except errors.KeyOrganizationMismatch as mismatch:
            if reason is None:
                raise
            override = {
                "reason": reason[:500],
                "certificate_organization": mismatch.details["certificate_organization"],
                "agency_name": agency_name,
            }
    except errors.ServiceError as refusal:
        with services.db.transaction() as session:
            audit.append(
                session,
                actor=actor,
                action="key.refused",
                agency_code=agency_code,
                subject=name[:255],
                details={"kind": kind, "code": refusal.code},
            )
        raise
    uid = new_id()
    wrapped = None
    if store is not None and checked.secret is not None:
        wrapped = store.put(uid, binding(uid, agency_code, kind), checked.secret)
    row = SigningKey(
        uid=uid,
        agency_id=agency_id,
        name=name,
        kind=kind,
        certificate=checked.certificate.dump(),
        chain=pem_chain(checked.chain),
        certificate_sha256=fingerprint,
        reference=checked.reference,
        wrapped_key=wrapped,
        dev=dev,
        created_by=actor,
        created_at=datetime.now(UTC),
    )
    try:
        with services.db.transaction() as session:
            # Checked again under the transaction: two registrations may race.
            _check_name_free(session, agency_id, name)
            _check_not_registered(session, fingerprint)
            session.add(row)
            session.flush()
            audit.append(
                session,
                actor=actor,
                action="key.registered",
                agency_code=agency_code,
                subject=name,
                details={
                    "kind": kind,
                    "source": checked.reference.get("module") or checked.reference.get("provider"),
                    "certificate_sha256": fingerprint,
                    "dev": dev,
                    **({"organization_override": override} if override else {}),
                },
            )
    except BaseException:
        if store is not None:
            store.remove(uid)
        raise
    return KeyView.of(row, agency_code)


def renew_certificate(
    services: Services,
    *,
    agency_code: str,
    name: str,
    material: Material,
    actor: str,
    reason: str,
) -> KeyView:
    """Give active key ``name`` of agency ``agency_code`` the certificate ``material`` carries,
    for the same key (its public key equal to the registered certificate's) and of the same
    kind; the new certificate passes every check of :func:`register_key` (chain, validity,
    usage, revocation). The row keeps its id, so profiles and earlier signatures keep
    referring to it; a PKCS#12 key's sealed material is re-sealed with the new certificate
    (the key source refuses a material whose certificate is not the registered one). Audited
    as ``key.certificate_renewed`` with both fingerprints and ``reason``.

    What the development bootstrap does when the dev PKI is re-issued for another port (new
    user 14 F9: the registry kept the old certificates, whose OCSP address nobody answers, so
    every signature was refused ``SIGNER_CERT_STATUS_UNKNOWN``). Raises
    :class:`errors.ProfileKeyMissing` (no such active key), :class:`errors.KeyCertificateMismatch`
    (another key or kind), and the material's and the signer checks' errors; nothing is
    changed then."""
    kind = _kind(material)
    store = KeyStore.of(services) if kind in ("pkcs12", "pkcs11") else None
    with services.db.transaction() as session:
        agency = session.scalars(select(Agency).where(Agency.code == agency_code)).first()
        if agency is None:
            raise errors.AgencyNotFound()
        row = session.scalars(
            select(SigningKey).where(
                SigningKey.agency_id == agency.id,
                SigningKey.name == name,
                SigningKey.disabled_at.is_(None),
            )
        ).first()
        if row is None:
            raise errors.ProfileKeyMissing()
        row_id, uid, row_kind = row.id, row.uid, row.kind
        registered = x509.Certificate.load(row.certificate)
    checked = _prepare(services, material, name)
    if row_kind != kind or checked.certificate.public_key.dump() != registered.public_key.dump():
        raise errors.KeyCertificateMismatch()
    _check_certificate(services, checked)
    fingerprint = sha256_fingerprint(checked.certificate)
    with services.db.transaction() as session:
        row = session.get(SigningKey, row_id)
        assert row is not None
        previous = row.certificate_sha256
        if store is not None and checked.secret is not None:
            # Written before the commit: should the commit fail, the row's wrapped key no longer
            # opens the file, and the next renewal (which reads the material afresh) seals both
            # again; only development's bootstrap calls this.
            row.wrapped_key = store.put(uid, binding(uid, agency_code, kind), checked.secret)
        row.certificate = checked.certificate.dump()
        row.chain = pem_chain(checked.chain)
        row.certificate_sha256 = fingerprint
        audit.append(
            session,
            actor=actor,
            action="key.certificate_renewed",
            agency_code=agency_code,
            subject=name,
            details={
                "kind": kind,
                "previous_certificate_sha256": previous,
                "certificate_sha256": fingerprint,
                "reason": reason,
                "dev": row.dev,
            },
        )
        view = KeyView.of(row, agency_code)
    services.keys.forget(uid)
    return view


def _check_name_free(session: Session, agency_id: int, name: str) -> None:
    taken = session.scalars(
        select(SigningKey.id).where(SigningKey.agency_id == agency_id, SigningKey.name == name)
    ).first()
    if taken is not None:
        raise errors.KeyExists()


def _check_not_registered(session: Session, fingerprint: str) -> None:
    """A certificate (and so its key) belongs to one agency, under one name."""
    taken = session.scalars(
        select(SigningKey.id).where(
            SigningKey.certificate_sha256 == fingerprint, SigningKey.disabled_at.is_(None)
        )
    ).first()
    if taken is not None:
        raise errors.KeyAlreadyRegistered()


def list_keys(
    services: Services, agency_code: str | None = None, *, include_disabled: bool = True
) -> list[KeyView]:
    """Registered keys (of one agency, or all), by agency and name."""
    with services.db.transaction() as session:
        query = select(SigningKey, Agency.code).join(Agency, Agency.id == SigningKey.agency_id)
        if agency_code is not None:
            if session.scalars(select(Agency.id).where(Agency.code == agency_code)).first() is None:
                raise errors.AgencyNotFound()
            query = query.where(Agency.code == agency_code)
        if not include_disabled:
            query = query.where(SigningKey.disabled_at.is_(None))
        rows = session.execute(query.order_by(Agency.code, SigningKey.name)).all()
        return [KeyView.of(row, code) for row, code in rows]


def agency_keys(services: Services, agency: Agency) -> list[KeyView]:
    """The agency's active keys (what its administrator may choose from)."""
    with services.db.transaction() as session:
        rows = session.scalars(
            select(SigningKey)
            .where(SigningKey.agency_id == agency.id, SigningKey.disabled_at.is_(None))
            .order_by(SigningKey.name)
        ).all()
        return [KeyView.of(row, agency.code) for row in rows]


def disable_key(services: Services, *, agency_code: str, name: str, actor: str) -> KeyView:
    """Disable key ``name`` of ``agency_code`` (:class:`errors.KeyNotRegistered` when it has
    no such active key). Profiles that use it refuse to sign (``PROFILE_KEY_MISSING``) until
    their administrator chooses another key."""
    with services.db.transaction() as session:
        row = session.scalars(
            select(SigningKey)
            .join(Agency, Agency.id == SigningKey.agency_id)
            .where(
                Agency.code == agency_code,
                SigningKey.name == name,
                SigningKey.disabled_at.is_(None),
            )
        ).first()
        if row is None:
            raise errors.KeyNotRegistered()
        row.disabled_at = datetime.now(UTC)
        users = session.scalars(
            select(SigningProfile.name).where(
                SigningProfile.key_id == row.id, SigningProfile.disabled_at.is_(None)
            )
        ).all()
        audit.append(
            session,
            actor=actor,
            action="key.disabled",
            agency_code=agency_code,
            subject=name,
            details={
                "kind": row.kind,
                "certificate_sha256": row.certificate_sha256,
                "profiles": sorted(users),
            },
        )
        view = KeyView.of(row, agency_code)
    services.keys.forget(row.uid)
    return view


def active_key(
    session: Session, agency_id: int, *, name: str | None = None, key_id: int | None = None
) -> SigningKey | None:
    """The agency's active key by name or id; ``None`` for a key of another agency, a
    disabled one or one that does not exist (callers answer all three alike)."""
    query = select(SigningKey).where(
        SigningKey.agency_id == agency_id, SigningKey.disabled_at.is_(None)
    )
    if name is not None:
        query = query.where(SigningKey.name == name)
    elif key_id is not None:
        query = query.where(SigningKey.id == key_id)
    else:
        return None
    return session.scalars(query).first()


def _csc_credential(provider_name: str, credential: str, services: Services) -> CscCredential:
    from signing_service.signing.keys.csc import CscCredential

    provider = allowlists.csc_providers(services).get(provider_name)
    if provider is None:
        raise KeySourceError(f"remote signing provider {provider_name!r} is not configured")
    source = provider.token_source
    return CscCredential(
        base_url=provider.url,
        credential_id=credential,
        token=lambda: allowlists.read_secret_source(source).decode(),
        timeout=provider.timeout_seconds,
    )


def spec_for(services: Services, row: SigningKey, agency_code: str) -> KeySpec:
    """How the key sources open ``row``: its certificate and chain as registered, its
    reference resolved against the operator's configuration, its secret unsealed on use."""
    certificate = x509.Certificate.load(row.certificate)
    chain = tuple(load_certificates(row.chain)) if row.chain else ()
    reference = dict(row.reference or {})
    params: dict[str, str] = {}
    secret: Callable[[], bytes] | None = None
    if row.kind in ("pkcs12", "pkcs11"):
        uid, bound, wrapped = row.uid, binding(row.uid, agency_code, row.kind), row.wrapped_key
        if wrapped is None:
            raise KeySourceError(f"key {row.name} has no sealed material")

        def unsealed() -> bytes:
            try:
                return KeyStore.of(services).get(uid, bound, wrapped)
            except OSError as e:
                raise KeySourceError(f"key store unreadable: {e.strerror}") from None

        secret = unsealed
    if row.kind == "pkcs11":
        module = allowlists.pkcs11_modules(services).get(reference.get("module", ""))
        if module is None:
            raise KeySourceError(f"PKCS#11 module {reference.get('module')!r} is not configured")
        params = {k: v for k, v in reference.items() if k in ("token", "object", "id")}
        params["module"] = module
    elif row.kind == "csc":
        credential = _csc_credential(
            reference.get("provider", ""), reference["credential"], services
        )
        params = {
            "url": credential.base_url,
            "credential": credential.credential_id,
            "timeout": str(credential.timeout),
        }
        token = credential.token

        def provider_token() -> bytes:
            return str(token()).encode()

        secret = provider_token
    return KeySpec(
        kind=row.kind,
        key_id=row.uid,
        certificate=certificate,
        chain=chain,
        params=params,
        secret=secret,
    )


def signing_key(services: Services, agency: Agency, profile: SigningProfile) -> LoadedKey:
    """The opened key of a one-step profile. Raises :class:`errors.ProfileNeedsTwoStep` for a
    two-step profile, :class:`errors.ProfileKeyMissing` when the profile has no active key of
    its agency, and the key source's own error when it cannot be opened."""
    if profile.two_step:
        raise errors.ProfileNeedsTwoStep()
    with services.db.transaction() as session:
        row = signing_key_row(session, agency, profile)
    return open_signing_key(services, agency, row)


def signing_key_row(session: Session, agency: Agency, profile: SigningProfile) -> SigningKey:
    """The registry row of a one-step profile's key, read in the caller's transaction (the
    signing path reads it with the profile, in one). Raises what :func:`signing_key` does,
    except the key source's errors: open the row with :func:`open_signing_key`, after the
    transaction (opening may unseal, log in to a token or call a provider)."""
    if profile.two_step:
        raise errors.ProfileNeedsTwoStep()
    row = (
        active_key(session, agency.id, key_id=profile.key_id)
        if profile.key_id is not None and profile.agency_id == agency.id
        else None
    )
    if row is None or row.kind not in SIGNING_KINDS:
        raise errors.ProfileKeyMissing()
    return row


def open_signing_key(services: Services, agency: Agency, row: SigningKey) -> LoadedKey:
    """The opened key of a row from :func:`signing_key_row`; the key source's own error
    (mapped by :func:`key_error`) when it cannot be opened."""
    # An opened key is cached by its registry id (disabling it forgets it): its spec, which
    # parses the registered certificates (~1 ms), is built only to open it.
    opened = services.keys.cached(row.uid)
    if opened is not None:
        return opened
    try:
        return services.keys.get(spec_for(services, row, agency.code))
    except KeySourceError as e:
        log.error("key %s (%s) of %s unavailable: %s", row.name, row.kind, agency.code, e)
        raise key_error(e) from None


def officer_for(
    services: Services,
    agency: Agency,
    profile: SigningProfile,
    *,
    officer: str | None,
    presented: bytes | None,
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """The registered officer certificate (and chain) a two-step signature is made with.

    The profile's own officer when it names one; else the officer named ``officer``, or the one
    whose certificate is ``presented`` (PEM/DER), among the agency's registered officers. A
    presented certificate must be exactly the registered one. Raises
    :class:`errors.OfficerNotRegistered` (another agency's officer answers the same),
    :class:`errors.OfficerRequired`, :class:`errors.ExternalCertificateInvalid`.
    """
    fingerprint = None
    if presented is not None:
        try:
            fingerprint = sha256_fingerprint(load_certificates(presented)[0])
        except ValueError:
            raise errors.ExternalCertificateInvalid() from None
    with services.db.transaction() as session:
        if profile.key_id is not None:
            row = active_key(session, agency.id, key_id=profile.key_id)
            if row is None:
                raise errors.ProfileKeyMissing()
            if officer is not None and officer != row.name:
                row = None
        elif officer is not None:
            row = active_key(session, agency.id, name=officer) if KEY_NAME.match(officer) else None
        elif fingerprint is not None:
            row = session.scalars(
                select(SigningKey).where(
                    SigningKey.agency_id == agency.id,
                    SigningKey.kind == "officer",
                    SigningKey.certificate_sha256 == fingerprint,
                    SigningKey.disabled_at.is_(None),
                )
            ).first()
        else:
            raise errors.OfficerRequired()
    if row is None or row.kind != "officer":
        raise errors.OfficerNotRegistered()
    if fingerprint is not None and fingerprint != row.certificate_sha256:
        raise errors.OfficerNotRegistered()
    chain = tuple(load_certificates(row.chain)) if row.chain else ()
    return x509.Certificate.load(row.certificate), chain


def officer_still_registered(services: Services, agency: Agency, certificate: bytes) -> bool:
    """An active officer key of ``agency`` has this certificate (DER)."""
    fingerprint = sha256_fingerprint(x509.Certificate.load(certificate))
    with services.db.transaction() as session:
        found = session.scalars(
            select(SigningKey.id).where(
                SigningKey.agency_id == agency.id,
                SigningKey.kind == "officer",
                SigningKey.certificate_sha256 == fingerprint,
                SigningKey.disabled_at.is_(None),
            )
        ).first()
    return found is not None
