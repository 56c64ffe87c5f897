"""Two-step signing for keys the service never holds (officers' USB tokens in the browser).

1. ``start_external``: the client sends the PDF and the signer's certificate; the service checks
   the certificate (validity, key usage, policy, chain, revocation), prepares the document and
   the signed attributes, keeps that state server-side with an expiry, and returns the data to
   sign and its digest.
2. ``complete_external``: the client sends the raw signature value (or a complete CMS). The
   service checks the certificate again (it may have been revoked since step 1: the duties of
   TT 15/2025 Art. 5 hold before every signature), checks the signature against the session's
   certificate and data before anything is embedded, embeds it (B-T: with a checked RFC 3161
   timestamp; a client CMS's own timestamp tokens are checked like ours, and one without a
   token gets ours), verifies the result, and stores it like any other signed document. A
   session completes at most once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from asn1crypto import cms, pem, x509
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from signing_service import audit, errors
from signing_service._async import run_sync
from signing_service.services import existing
from signing_service.services.container import Services
from signing_service.services.documents import (
    check_codes,
    check_pdf_upload,
    check_result_code_available,
    check_signing_input,
)
from signing_service.services.keys import active_key, officer_for, officer_still_registered
from signing_service.services.registry import new_public_id
from signing_service.services.signing import (
    IDEMPOTENCY_CONFLICT_MESSAGE,
    TIMESTAMP_ERRORS,
    QrRequest,
    Registration,
    SignResult,
    _level,
    _options,
    _profile,
    check_idempotency_key,
    check_qr_request,
    check_signed_size,
    check_signer,
    checked_timestamper,
    pdf_input_error,
    placement_error,
    qr_content,
    request_digest,
    signing_limit,
    store_signed,
    timestamp_error,
    timestamp_unavailable,
    tsa_url_of,
)
from signing_service.signing.engine import (
    EXTERNAL_LEVELS,
    PdfInputError,
    PreparedExternal,
    async_add_signature_timestamp,
    async_finish_external,
    async_prepare_external,
    signature_timestamp_tokens,
    signing_moment,
)
from signing_service.signing.keys.base import sha256_fingerprint
from signing_service.signing.levels import SignatureLevel
from signing_service.signing.placement import PlacementError
from signing_service.signing.qr import QrOnSignedDocument
from signing_service.signing.rawsig import der_ecdsa_signature, raw_signature_valid
from signing_service.signing.tsa import TimestampCheckFailure
from signing_service.store.models import (
    Agency,
    AuditEntry,
    ExternalSession,
    SigningProfile,
    new_id,
)
from signing_service.timefmt import api_time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExternalStart:
    session_id: str
    level: str
    digest_algorithm: str
    signature_algorithm: str
    data_to_sign: str  # base64 DER of the signed attributes (what the signature covers)
    digest: str  # base64 digest of data_to_sign, for tokens that sign a hash
    expires_at: str
    # The session of an earlier step 1 with the same Idempotency-Key (API: 200, not 201).
    replayed: bool = False
    # The signatures the document already carries, as judged at step 1 (services/existing.py).
    existing_signatures: tuple[existing.ExistingSignature, ...] = ()


def _load_certs(data: bytes) -> list[x509.Certificate]:
    try:
        if pem.detect(data):
            return [x509.Certificate.load(der) for _, _, der in pem.unarmor(data, multiple=True)]
        cert = x509.Certificate.load(data)
        cert.native  # noqa: B018 - force a full parse
        return [cert]
    except (ValueError, TypeError, OSError):
        raise errors.ExternalCertificateInvalid() from None


def _pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(pem.armor("CERTIFICATE", c.dump()) for c in certs)


def start_external(
    services: Services,
    agency: Agency,
    *,
    profile_name: str,
    pdf: bytes,
    certificate: bytes | None = None,
    officer: str | None = None,
    level: str | None = None,
    filename: str | None = None,
    dossier_code: str | None = None,
    result_code: str | None = None,
    actor: str,
    field_name: str | None = None,
    qr: QrRequest | None = None,
    idempotency_key: str | None = None,
) -> ExternalStart:
    """``idempotency_key``: step 1's ``Idempotency-Key``; the same key and request again
    answer the same session (``replayed=True``), another request under it is 409
    ``IDEMPOTENCY_KEY_CONFLICT``, two concurrent ones make one session.

    ``field_name``: a prepared empty signature field to fill (else the profile's, else by
    placement rule). ``officer``: the name of one of the agency's registered officer certificates;
    ``certificate``: the officer's certificate (PEM/DER), which must be one of them. A
    certificate the operator has not registered for this agency is refused
    (``OFFICER_NOT_REGISTERED``), whatever chain it comes with: a CA certificate, another
    agency's officer, anyone's. ``dossier_code``, ``result_code``: as for one-step signing
    (:func:`signing_service.services.documents.check_codes`); an ``auto`` result code is
    assigned at completion, when the signed document is stored. ``qr``: a QR code on page 1,
    drawn at step 1 with the signed document's id chosen then (as for one-step signing).

    A document that already carries signatures is verified here, before a session exists
    (services/existing.py): 422 ``EXISTING_SIGNATURE_INVALID``, audited as
    ``signature.refused``; :func:`complete_external` judges them again on the completed
    document."""
    check_pdf_upload(pdf, signing_limit(services, pdf))
    check_signing_input(pdf)
    codes = check_codes(dossier_code, result_code, agency.code)
    if qr is not None:
        qr = check_qr_request(services, qr, agency.code)
    idempotency = None
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
        digest = request_digest(
            pdf,
            profile=profile_name,
            level=level,
            filename=filename,
            dossier_code=dossier_code,
            result_code=result_code,
            field_name=field_name,
            appearance=None,
            qr=qr,
            extra={
                "officer": officer or None,
                "certificate": hashlib.sha256(certificate).hexdigest() if certificate else None,
            },
        )
        idempotency = (idempotency_key, digest)
        replayed = _replay_start(services, agency, idempotency_key, digest)
        if replayed is not None:
            return replayed
    profile = _profile(services, agency, profile_name)
    if not profile.two_step:
        raise errors.ProfileNotExternal()
    chosen = _level(level, profile)
    if chosen not in EXTERNAL_LEVELS:
        raise errors.InvalidLevel("Ký hai bước hỗ trợ mức B-B và B-T.")
    signer_cert, registered_chain = officer_for(
        services, agency, profile, officer=officer, presented=certificate
    )
    intermediates = list(registered_chain)
    run_sync(check_signer(services, signer_cert, intermediates))
    check_result_code_available(services, agency.id, codes)
    # The claimed signing time, fixed now: the stamp prints it and /M records it; completion
    # reports it as the signature's signed_at (README, two-step signing).
    now = signing_moment()
    document_id = new_id()
    # The registry id, chosen now: the QR code drawn at this step links to its record.
    public_id = new_public_id()
    options = _options(profile, chosen, field_name, services=services)
    if qr is not None:
        content = qr_content(services, qr, codes, filename, now, public_id)
        options = replace(options, qr=content)
    countersigning = existing.Countersigning(services, pdf)
    try:
        prepared = run_sync(
            async_prepare_external(
                pdf,
                signer_cert,
                intermediates,
                options,
                # Its token size sizes the reservation (learnt once per TSA); the first time,
                # the sizing token is checked too, so a bad TSA is refused before a session.
                timestamper=(
                    checked_timestamper(services, tsa_url_of(services, profile))
                    if chosen.needs_timestamp
                    else None
                ),
                now=now,
                countersigning=countersigning,
            )
        )
    except errors.ExistingSignatureInvalid as refusal:
        existing.audit_refusal(
            services,
            actor=actor,
            agency_code=agency.code,
            subject=hashlib.sha256(pdf).hexdigest(),
            refusal=refusal,
            flow="two-step",
            profile=profile.name,
        )
        raise
    except PdfInputError as e:
        raise pdf_input_error(e) from None
    except PlacementError as e:
        raise placement_error(e) from None
    except QrOnSignedDocument:
        raise errors.QrOnSignedDocument() from None
    except TimestampCheckFailure as failure:
        raise timestamp_error(services, failure) from None
    # The prepared document has the signature's full reservation: its size is the result's.
    check_signed_size(services, prepared.prepared_pdf)
    expires = now + timedelta(seconds=services.settings.external_session_seconds)
    row = ExternalSession(
        agency_id=agency.id,
        profile_id=profile.id,
        state="pending",
        level=chosen.value,
        certificate=signer_cert.dump(),
        chain=_pem(intermediates),
        md_algorithm=prepared.md_algorithm,
        signed_attrs=prepared.signed_attrs,
        document_digest=prepared.document_digest,
        reserved_start=prepared.reserved_start,
        reserved_end=prepared.reserved_end,
        prepared_pdf=prepared.prepared_pdf,
        input_pdf_sha256=hashlib.sha256(pdf).hexdigest(),
        input_size=len(pdf),
        filename=filename,
        dossier_code=codes.dossier_code,
        result_code=codes.result_code,
        document_id=document_id,
        public_id=public_id,
        registration=Registration.of(options).to_dict(),
        created_at=now,
        expires_at=expires,
        idempotency_key=idempotency[0] if idempotency is not None else None,
        request_sha256=idempotency[1] if idempotency is not None else None,
    )
    found = tuple(countersigning.found or ())
    try:
        _store_session(services, agency, row, profile, chosen, signer_cert, actor, found)
    except IntegrityError:
        # A concurrent step 1 with the same key committed first: answer its session.
        if idempotency is not None:
            replayed = _replay_start(services, agency, *idempotency)
            if replayed is not None:
                return replayed
        raise
    return _start_of(row, existing_signatures=found)


def _store_session(
    services: Services,
    agency: Agency,
    row: ExternalSession,
    profile: SigningProfile,
    chosen: SignatureLevel,
    signer_cert: x509.Certificate,
    actor: str,
    existing_signatures: tuple[existing.ExistingSignature, ...] = (),
) -> None:
    with services.db.transaction() as session:
        session.add(row)
        session.flush()
        audit.append(
            session,
            actor=actor,
            action="external.started",
            agency_code=agency.code,
            subject=row.id,
            details={
                "profile": profile.name,
                "level": chosen.value,
                "certificate_sha256": signer_cert.sha256.hex(),
                "input_sha256": row.input_pdf_sha256,
                **(
                    {"existing_signatures": [s.to_dict() for s in existing_signatures]}
                    if existing_signatures
                    else {}
                ),
            },
        )


def _start_of(
    row: ExternalSession,
    replayed: bool = False,
    existing_signatures: tuple[existing.ExistingSignature, ...] = (),
) -> ExternalStart:
    """Step 1's answer from its session row (and the earlier signatures judged then)."""
    cert = x509.Certificate.load(row.certificate)
    mechanism = "ecdsa" if cert.public_key.algorithm == "ec" else "rsassa_pkcs1v15"
    return ExternalStart(
        session_id=row.id,
        level=row.level,
        digest_algorithm=row.md_algorithm,
        signature_algorithm=mechanism,
        data_to_sign=base64.b64encode(row.signed_attrs).decode(),
        digest=base64.b64encode(hashlib.new(row.md_algorithm, row.signed_attrs).digest()).decode(),
        expires_at=api_time(row.expires_at),
        replayed=replayed,
        existing_signatures=existing_signatures,
    )


def _replay_start(
    services: Services, agency: Agency, key: str, digest: str
) -> ExternalStart | None:
    """The agency's session started under ``key`` (``replayed=True``), ``None`` when none;
    409 ``IDEMPOTENCY_KEY_CONFLICT`` when it was started by another request."""
    with services.db.transaction() as session:
        row = session.scalars(
            select(ExternalSession).where(
                ExternalSession.agency_id == agency.id, ExternalSession.idempotency_key == key
            )
        ).first()
        if row is None:
            return None
        if row.request_sha256 != digest:
            raise errors.IdempotencyConflict(
                IDEMPOTENCY_CONFLICT_MESSAGE,
                details={"session_id": row.id},
            )
        # The earlier signatures judged at step 1 are in its audit entry.
        entry = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "external.started", AuditEntry.subject == row.id
            )
        ).first()
        details = json.loads(entry.details) if entry is not None else {}
        found = tuple(
            existing.ExistingSignature.from_dict(item)
            for item in details.get("existing_signatures", ())
            if isinstance(item, dict)
        )
        return _start_of(row, replayed=True, existing_signatures=found)


def _check_cms(row: ExternalSession, cert: x509.Certificate, data: bytes) -> cms.ContentInfo:
    try:
        ci = cms.ContentInfo.load(data)
        signed_data = ci["content"]
        signer_info = signed_data["signer_infos"][0]
        certs = [c.chosen for c in signed_data["certificates"] or []]
        attrs = signer_info["signed_attrs"]
        digest = next(a["values"][0].native for a in attrs if a["type"].native == "message_digest")
        algorithm = signer_info["digest_algorithm"]["algorithm"].native
        signature = signer_info["signature"].native
        signer_count = len(signed_data["signer_infos"])
        detached = signed_data["encap_content_info"]["content"].native is None
    except (ValueError, KeyError, IndexError, TypeError, StopIteration):
        raise errors.ExternalCmsInvalid() from None
    sid = signer_info["sid"]
    if sid.name != "issuer_and_serial_number":
        raise errors.ExternalCertificateMismatch()
    ias = sid.chosen
    signer = next(
        (
            c
            for c in certs
            if c.issuer == ias["issuer"] and c.serial_number == ias["serial_number"].native
        ),
        None,
    )
    if signer is None or signer.dump() != cert.dump():
        raise errors.ExternalCertificateMismatch()
    if digest != row.document_digest:
        raise errors.ExternalCmsWrongDocument()
    signed = attrs.untag().dump()
    if signed != row.signed_attrs:
        raise errors.ExternalCmsInvalid(
            SIGNED_ATTRIBUTES_MESSAGE,
            details={"signed_attributes": _attribute_differences(row.signed_attrs, attrs)},
        )
    if signer_count != 1 or not detached:
        # One signer, detached (the document is the PDF's byte ranges, not a copy inside).
        raise errors.ExternalCmsInvalid()
    if not raw_signature_valid(cert, signed, signature, algorithm):
        raise errors.ExternalSignatureInvalid()
    return ci


SIGNED_ATTRIBUTES_MESSAGE = (
    "Gói chữ ký CMS gửi lên có thuộc tính được ký khác với dữ liệu cần ký (data_to_sign) của "
    "phiên này; chỉ chấp nhận đúng các thuộc tính dịch vụ đã lập (xem details.signed_attributes)."
)


def _attribute_differences(prescribed: bytes, sent: cms.CMSAttributes) -> list[dict[str, str]]:
    """Which signed attributes of a client CMS are not the session's (red team 17b, R17B-4:
    a ``signing-time``, which ETSI EN 319 142-1 forbids in PAdES, backdated a B-B document):
    ``{"attribute", "oid", "problem"}`` with ``problem`` ``unexpected`` (not prescribed),
    ``different`` (another value) or ``missing``; ``encoding`` when only the bytes differ
    (order, non-DER lengths), ``unreadable`` when they cannot be read. At most 10."""

    def by_type(attrs: cms.CMSAttributes) -> dict[str, tuple[str, bytes]]:
        return {a["type"].dotted: (str(a["type"].native), a["values"].dump()) for a in attrs}

    ours = by_type(cms.CMSAttributes.load(prescribed))
    try:
        theirs = by_type(sent)
    except (ValueError, KeyError, TypeError):
        return [{"attribute": "", "oid": "", "problem": "unreadable"}]
    found = []
    for oid, (name, values) in theirs.items():
        if oid not in ours:
            found.append({"attribute": name, "oid": oid, "problem": "unexpected"})
        elif ours[oid][1] != values:
            found.append({"attribute": name, "oid": oid, "problem": "different"})
    for oid, (name, _) in ours.items():
        if oid not in theirs:
            found.append({"attribute": name, "oid": oid, "problem": "missing"})
    if not found:
        found.append({"attribute": "", "oid": "", "problem": "encoding"})
    return found[:10]


# The only unsigned attribute a client's CMS may carry: its signature timestamp, which is
# checked before it is stored. Validation data is ours to add (the DSS, B-LT and above).
ALLOWED_UNSIGNED_ATTRIBUTES = frozenset({"signature_time_stamp_token"})


def _check_client_timestamps(services: Services, ci: cms.ContentInfo, level: str) -> None:
    """A client-built CMS may carry its own signature timestamps at B-T: each is checked as
    ours are (signature, TSA chain and purpose, algorithms, imprint over the signature value,
    time) before it is stored. Refused: 422 ``EXTERNAL_TIMESTAMP_REFUSED`` with the check's code
    in ``details.code`` (503 with ``Retry-After`` when the TSA's status is unknown). On a B-B
    session a timestamp is refused (``EXTERNAL_CMS_INVALID``): the document would be B-T while
    the service records B-B (red team 17b, R17B-9)."""
    try:
        tokens = signature_timestamp_tokens(ci)
        signature_value = ci["content"]["signer_infos"][0]["signature"].native
        unexpected = sorted(
            {
                attribute["type"].dotted
                for info in ci["content"]["signer_infos"]
                for attribute in (info["unsigned_attrs"] or [])
                if attribute["type"].native not in ALLOWED_UNSIGNED_ATTRIBUTES
            }
        )
    except (ValueError, KeyError, IndexError, TypeError):
        raise errors.ExternalCmsInvalid() from None
    if unexpected:
        # Anything else a client adds unsigned would be stored unchecked (red team: a
        # self-signed timestamp token in an archive-timestamp attribute).
        raise errors.ExternalCmsInvalid(details={"unsigned_attributes": unexpected[:10]})
    if tokens and level == SignatureLevel.B_B.value:
        raise errors.ExternalCmsInvalid(
            "Phiên ký hai bước này ở mức B-B: gói chữ ký CMS gửi lên không được mang dấu thời "
            "gian (mức B-T); hãy bỏ dấu thời gian hoặc bắt đầu phiên ở mức B-T.",
            details={"unsigned_attributes": ["1.2.840.113549.1.9.16.2.14"], "level": level},
        )
    for token in tokens:
        try:
            run_sync(services.token_checker.async_check_over(token, signature_value))
        except TimestampCheckFailure as failure:
            if failure.reason == TimestampCheckFailure.STATUS_UNKNOWN:
                raise timestamp_error(services, failure) from None
            raise errors.ExternalTimestampRefused(
                details={
                    "code": TIMESTAMP_ERRORS[failure.reason].code,
                    "reason": failure.detail,
                }
            ) from None


def complete_external(
    services: Services,
    agency: Agency,
    session_id: str,
    *,
    signature: bytes | None = None,
    signature_cms: bytes | None = None,
    actor: str,
) -> SignResult:
    with services.db.transaction() as session:
        row = session.scalars(
            select(ExternalSession).where(
                ExternalSession.id == session_id, ExternalSession.agency_id == agency.id
            )
        ).first()
        profile = session.get(SigningProfile, row.profile_id) if row is not None else None
    if row is None or profile is None:
        raise errors.ExternalSessionNotFound()
    lease = claim_lease(services)
    if row.state != PENDING and not _abandoned(row.state, row.claimed_at, lease):
        claimed = _aware(row.claimed_at)
        left = lease - (datetime.now(UTC) - claimed).total_seconds() if claimed else lease
        raise _used(row.state, row.document_id, max(1.0, left))
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    if datetime.now(UTC) > expires:
        raise errors.ExternalSessionExpired()
    # The agency's administrator may have withdrawn or changed the profile since step 1.
    _check_profile_still_allows(services, agency, profile, row.certificate)
    # The operator may have disabled the officer's certificate since the session started.
    if not officer_still_registered(services, agency, row.certificate):
        raise errors.OfficerNotRegistered()
    cert = x509.Certificate.load(row.certificate)
    chain = _load_certs(row.chain) if row.chain else []
    ci = None
    if signature is not None:
        # A token returns ECDSA as raw r‖s (PKCS#11, CSC); CMS embeds the DER form.
        signature = der_ecdsa_signature(cert, signature)
    if signature_cms is not None:
        ci = _check_cms(row, cert, signature_cms)
    elif signature is None or not raw_signature_valid(
        cert, row.signed_attrs, signature, row.md_algorithm
    ):
        raise errors.ExternalSignatureInvalid()
    # From here on the session is this request's alone (red team 21b, R21B-1: two concurrent
    # completions both embedded, both wrote, and the loser's cleanup deleted the winner's
    # committed document). Put back if this attempt fails before it commits.
    claim = _claim(services, row.id)
    try:
        return _complete_claimed(
            services,
            agency,
            row,
            profile,
            cert,
            chain,
            signature=signature,
            ci=ci,
            actor=actor,
            claim=claim,
        )
    except BaseException:
        _release(services, row.id, claim)
        raise


def _used(state: str, document_id: str | None = None, lease: float = 120.0) -> errors.ServiceError:
    """409 ``EXTERNAL_SESSION_USED`` for a session in ``state`` (not ``pending``); one being
    completed says when its claim lapses (``lease``: seconds left, also as ``Retry-After``,
    new user 23 #9). A completed
    one names its signed document (``details.document_id``, the agency's own): a client whose
    answer to step 2 was lost, retrying, finds what it signed (new user 22 #4)."""
    if state == COMPLETING:
        return errors.ExternalSessionUsed(
            "Phiên ký hai bước này đang được hoàn tất bởi một yêu cầu khác; hãy xem kết quả của "
            "yêu cầu đó (nếu yêu cầu đó không thành công, phiên lại dùng được; nếu yêu cầu đó "
            f"bị gián đoạn, gửi lại sau {int(lease + 0.999)} giây).",
            details={"state": COMPLETING, "retry_after_seconds": int(lease + 0.999)},
            headers={"Retry-After": str(int(lease + 0.999))},
        )
    if state == COMPLETED and document_id is not None:
        return errors.ExternalSessionUsed(
            "Phiên ký hai bước này đã hoàn tất; văn bản đã ký có mã trong details.document_id "
            "(tải về qua GET /v1/documents/{id}/content).",
            details={"state": COMPLETED, "document_id": document_id},
        )
    return errors.ExternalSessionUsed()


# A session's states: ``pending`` (step 1 done), ``completing`` (a step 2 holds it: claimed
# by one conditional UPDATE, put back to pending if that attempt fails), ``completed``.
PENDING, COMPLETING, COMPLETED = "pending", "completing", "completed"

CLAIM_LEASE_SECONDS = 120.0
"""How long a step 2's claim on a session holds. A step 2 is bounded well within it (each
TSA, OCSP and CRL request by ``SIGNING_SERVICE_FETCH_TIMEOUT_SECONDS``, the document by the
upload limit); a claim older than this belongs to a request that died with its process (the
session was left "completing" until it expired: the officer had to sign again), and the next
step 2 takes it over. The old attempt, should it still be running, can no longer complete:
completion and release both require its own claim token."""


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def claim_lease(services: Services) -> float:
    """Seconds a claim holds: :data:`CLAIM_LEASE_SECONDS`, or eight fetch timeouts when those
    are longer (a TSA request may take two, the signer's OCSP/CRL checks and the result's
    verification more: red team 23c R23C-7, a live but slow step 2 was taken over)."""
    return max(CLAIM_LEASE_SECONDS, 8 * services.settings.fetch_timeout_seconds)


def _abandoned(state: str, claimed_at: datetime | None, lease: float) -> bool:
    """Whether a session is "completing" under a claim older than ``lease`` seconds."""
    claimed = _aware(claimed_at)
    return (
        state == COMPLETING
        and claimed is not None
        and (datetime.now(UTC) - claimed).total_seconds() > lease
    )


def _claim(services: Services, session_id: str) -> str:
    """Take the session for this request and return the claim's token, or 409
    ``EXTERNAL_SESSION_USED`` (another request holds it or completed it): one conditional
    UPDATE, so of concurrent completions exactly one goes on, on both databases. A session
    left "completing" past :data:`CLAIM_LEASE_SECONDS` is taken over the same way."""
    import secrets

    token = secrets.token_hex(16)
    now = datetime.now(UTC)
    stale = now - timedelta(seconds=claim_lease(services))
    with services.db.transaction() as db:
        claimed = db.execute(
            update(ExternalSession)
            .where(
                ExternalSession.id == session_id,
                or_(
                    ExternalSession.state == PENDING,
                    and_(
                        ExternalSession.state == COMPLETING,
                        or_(
                            ExternalSession.claimed_at.is_(None),
                            ExternalSession.claimed_at < stale,
                        ),
                    ),
                ),
            )
            .values(state=COMPLETING, claim=token, claimed_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            return token
        found = db.execute(
            select(ExternalSession.state, ExternalSession.document_id).where(
                ExternalSession.id == session_id
            )
        ).first()
    state, document_id = (found[0], found[1]) if found is not None else (COMPLETED, None)
    raise _used(state, document_id, claim_lease(services))


def _release(services: Services, session_id: str, claim: str) -> None:
    """Put a session this request claimed (``claim``, :func:`_claim`'s token) back to pending
    after a failed attempt (a completed one stays completed: a commit whose answer was lost may
    have gone through; one another request took over stays with it). Should the database be
    unreachable, the claim lapses after :data:`CLAIM_LEASE_SECONDS`."""
    try:
        with services.db.transaction() as db:
            db.execute(
                update(ExternalSession)
                .where(
                    ExternalSession.id == session_id,
                    ExternalSession.state == COMPLETING,
                    ExternalSession.claim == claim,
                )
                .values(state=PENDING, claim=None, claimed_at=None)
                .execution_options(synchronize_session=False)
            )
    except Exception:  # noqa: BLE001 - the attempt's own error is the answer
        log.error("could not release two-step session %s", session_id)


def _check_profile_still_allows(
    services: Services, agency: Agency, profile: SigningProfile, certificate: bytes
) -> None:
    """Step 2 answers as step 1 would now (red team 21b, R21B-5): the profile withdrawn
    since (404 ``PROFILE_NOT_FOUND``), no longer two-step (422 ``PROFILE_NOT_EXTERNAL``), its
    officer's key disabled (422 ``PROFILE_KEY_MISSING``) or another officer named (422
    ``OFFICER_NOT_REGISTERED``)."""
    if profile.disabled_at is not None:
        raise errors.ProfileNotFound()
    if not profile.two_step:
        raise errors.ProfileNotExternal()
    if profile.key_id is None:
        return  # any of the agency's registered officers (checked next)
    with services.db.transaction() as db:
        key = active_key(db, agency.id, key_id=profile.key_id)
    if key is None:
        raise errors.ProfileKeyMissing()
    if key.certificate_sha256 != sha256_fingerprint(x509.Certificate.load(certificate)):
        raise errors.OfficerNotRegistered(
            "Cấu hình ký số đã được đổi sang chứng thư của người ký khác kể từ khi bắt đầu phiên; "
            "hãy bắt đầu lại phiên ký hai bước."
        )


def _complete_claimed(
    services: Services,
    agency: Agency,
    row: ExternalSession,
    profile: SigningProfile,
    cert: x509.Certificate,
    chain: list[x509.Certificate],
    *,
    signature: bytes | None,
    ci: cms.ContentInfo | None,
    actor: str,
    claim: str,
) -> SignResult:
    """Step 2 once the session is claimed: the signer checked again, the signature embedded,
    the result verified and stored with the session marked completed in its transaction."""
    # The signer is checked again before the signature is embedded: minutes may have passed
    # since step 1, and a certificate revoked meanwhile must not sign (TT 15/2025 Art. 5).
    check = run_sync(check_signer(services, cert, chain))
    prepared = PreparedExternal(
        prepared_pdf=row.prepared_pdf or b"",
        document_digest=row.document_digest,
        reserved_start=row.reserved_start,
        reserved_end=row.reserved_end,
        signed_attrs=row.signed_attrs,
        md_algorithm=row.md_algorithm,
    )
    if ci is not None:
        _check_client_timestamps(services, ci, row.level)
    timestamper = None
    if row.level == "B-T":
        timestamper = checked_timestamper(services, tsa_url_of(services, profile))
    try:
        if ci is not None and timestamper is not None and not signature_timestamp_tokens(ci):
            ci = run_sync(async_add_signature_timestamp(ci, timestamper, row.md_algorithm))
        signed = run_sync(
            async_finish_external(
                prepared,
                cert,
                chain,
                signature_cms=ci,
                raw_signature=signature,
                timestamper=timestamper if ci is None else None,
            )
        )
    except TimestampCheckFailure as failure:
        raise timestamp_error(services, failure) from None
    except Exception as e:  # noqa: BLE001 - TSA errors, or a CMS too large for the reservation
        from pyhanko.sign.timestamps import TimestampRequestError

        if isinstance(e, TimestampRequestError):
            raise timestamp_unavailable(services) from None
        raise errors.ExternalCmsInvalid() from None
    # Validated before it is returned: the new signature must be intact and the session's.
    report = run_sync(services.verifier.async_verify(signed))
    last = report.signatures[-1] if report.signatures else None
    if (
        last is None
        or last.checks["integrity"].status.value != "PASSED"
        or last.signer is None
        or last.signer.certificate_sha256 != cert.sha256.hex()
    ):
        raise errors.ExternalSignatureInvalid()
    # The earlier signatures, judged again on the completed document as at step 1: a signer
    # revoked since, a session prepared before the check existed, a change the new revision
    # makes that an earlier signature does not allow (services/existing.py). Document-level
    # problems are judged even with no earlier signature: a signature dictionary no field
    # reaches is one (red team 19b, R19B-1).
    earlier = report.signatures[:-1]
    try:
        found = tuple(existing.judge(earlier, report.problems))
    except errors.ExistingSignatureInvalid as refusal:
        existing.audit_refusal(
            services,
            actor=actor,
            agency_code=agency.code,
            subject=row.id,
            refusal=refusal,
            flow="two-step-complete",
            profile=profile.name,
        )
        raise
    # The prepared PDF is an incremental update: it begins with the original, byte for byte.
    pdf = (row.prepared_pdf or b"")[: row.input_size]
    if hashlib.sha256(pdf).hexdigest() != row.input_pdf_sha256:
        raise errors.StorageIntegrity("Trạng thái phiên ký hai bước bị hỏng.")

    def mark_completed(db: Session, signature_id: str) -> None:
        done = db.execute(
            update(ExternalSession)
            .where(
                ExternalSession.id == row.id,
                ExternalSession.state == COMPLETING,
                ExternalSession.claim == claim,
            )
            .values(state=COMPLETED, signature_id=signature_id, prepared_pdf=None)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise errors.ExternalSessionUsed()

    return store_signed(
        services,
        agency,
        profile,
        row.level,
        pdf,
        signed,
        cert,
        filename=row.filename,
        dossier_code=row.dossier_code,
        result_code=row.result_code,
        output_id=row.document_id,
        key_kind="officer",
        public_id=row.public_id,
        registration=Registration.from_dict(row.registration),
        actor=actor,
        in_transaction=mark_completed,
        check=check,
        signed_at=row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC),
        existing_signatures=found,
    )
