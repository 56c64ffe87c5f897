"""Sign a PDF with an agency's profile: check → sign → store both documents → record.

Nothing is half-written: objects are stored first under fresh keys, then the records and the
audit entry are committed in one transaction; if that fails, the objects are deleted. A crash
in between leaves only unreferenced objects, which no user can see.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import requests
from asn1crypto import x509
from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps import TimestampRequestError
from sqlalchemy import and_, bindparam, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from signing_service import audit, errors, metrics
from signing_service._async import run_sync
from signing_service.services import allowlists, evidence, existing
from signing_service.services.appearance_images import AppearanceRequest, resolve_appearance
from signing_service.services.container import Services
from signing_service.services.documents import (
    NO_CODES,
    DocumentCodes,
    DocumentView,
    check_applicant_id,
    check_codes,
    check_filename,
    check_pdf_upload,
    check_procedure_code,
    check_result_code_available,
    check_signing_input,
    resolve_result_code,
)
from signing_service.services.profile_rules import PROFILE_NAME_PATTERN, appearance_spec
from signing_service.services.registry import new_public_id, public_link, register_signed
from signing_service.services.registry_records import (
    signature_digests,
    signature_key,
    signed_sha256,
)
from signing_service.signing import prefix_digest, repair
from signing_service.signing.certcheck import SignerCheck, SignerCheckFailure
from signing_service.signing.engine import (
    BeforeCountersigning,
    PdfInputError,
    SignedFacts,
    SignOptions,
    TimestampError,
    async_sign_pdf,
    signing_moment,
)
from signing_service.signing.keys import (
    KeySourceError,
    LoadedKey,
    sha256_fingerprint,
    with_authorization,
)
from signing_service.signing.levels import SignatureLevel
from signing_service.signing.placement import PlacementError
from signing_service.signing.qr import QrContent, QrOnSignedDocument
from signing_service.signing.tsa import CheckedTimeStamper, TimestampCheckFailure
from signing_service.store.db import connection_lost
from signing_service.store.models import (
    Agency,
    Document,
    Signature,
    SigningKey,
    SigningProfile,
    new_id,
)
from signing_service.timefmt import api_time, vietnam_time
from signing_service.verification.active import describe as describe_active
from storage import StorageUnavailableError

log = logging.getLogger(__name__)
PROFILE_NAME = re.compile(PROFILE_NAME_PATTERN)

CHECK_ERRORS: dict[str, type[errors.ServiceError]] = {
    SignerCheckFailure.EXPIRED: errors.SignerCertExpired,
    SignerCheckFailure.KEY_USAGE: errors.SignerKeyUsage,
    SignerCheckFailure.CA_CERTIFICATE: errors.SignerCertIsCa,
    SignerCheckFailure.ALGORITHM: errors.AlgorithmPolicy,
    SignerCheckFailure.UNTRUSTED: errors.SignerCertUntrusted,
    SignerCheckFailure.REVOKED: errors.SignerCertRevoked,
    SignerCheckFailure.STATUS_UNKNOWN: errors.SignerCertStatusUnknown,
}

TIMESTAMP_ERRORS: dict[str, type[errors.ServiceError]] = {
    TimestampCheckFailure.INVALID: errors.TimestampInvalid,
    TimestampCheckFailure.UNTRUSTED: errors.TimestampUntrusted,
    TimestampCheckFailure.KEY_PURPOSE: errors.TimestampKeyPurpose,
    TimestampCheckFailure.WEAK_ALGORITHM: errors.TimestampWeakAlgorithm,
    TimestampCheckFailure.IMPRINT_MISMATCH: errors.TimestampImprintMismatch,
    TimestampCheckFailure.NONCE_MISMATCH: errors.TimestampNonceMismatch,
    TimestampCheckFailure.TIME_SKEW: errors.TimestampTimeSkew,
    TimestampCheckFailure.STATUS_UNKNOWN: errors.TimestampStatusUnknown,
}


@dataclass(frozen=True)
class SignResult:
    signature_id: str
    level: str
    profile: str
    signed_at: str
    certificate_sha256: str
    document: DocumentView
    input_document: DocumentView
    # The input was rebuilt (qpdf) before signing: the signed document is not an incremental
    # update of the upload (signing/repair.py).
    repaired: bool = False
    # The signed document's record in the registry of issued documents (services/registry.py)
    # and its public link (None without SIGNING_SERVICE_PUBLIC_BASE_URL).
    public_id: str | None = None
    link: str | None = None
    # The answer of an earlier request with the same Idempotency-Key (nothing was signed now;
    # the API answers 200 instead of 201, as attachments do).
    replayed: bool = False
    # The signatures the document carried before this one, as the verifier judged them before
    # signing (services/existing.py): passed, or undecided for a reason that does not refuse
    # (unknown trust anchor, revocation status unknown, expired without proof of existence).
    existing_signatures: tuple[existing.ExistingSignature, ...] = ()


# The 409 message when an Idempotency-Key already answered another signing request (one-step
# signing and two-step step 1 alike).
IDEMPOTENCY_CONFLICT_MESSAGE = (
    "Idempotency-Key này đã được dùng cho một yêu cầu ký khác (tệp, cấu hình ký số, tùy chọn "
    "hoặc mã hồ sơ khác)."
)


def _profile(services: Services, agency: Agency, name: str) -> SigningProfile:
    with services.db.transaction() as session:
        return _find_profile(session, agency, name)


def _find_profile(session: Session, agency: Agency, name: str) -> SigningProfile:
    if not PROFILE_NAME.match(name):
        # A name no profile can have (a NUL, overlong text) never reaches the database.
        raise errors.ProfileNotFound()
    profile = session.scalars(
        select(SigningProfile).where(
            SigningProfile.name == name,
            SigningProfile.agency_id == agency.id,
            SigningProfile.disabled_at.is_(None),
        )
    ).first()
    if profile is None:
        # Another agency's profile is indistinguishable from a missing one.
        raise errors.ProfileNotFound()
    return profile


# The profile and its key in one SELECT, built once with bound parameters: building and
# keying the statements for each request cost more CPU than running them (two queries
# 0.44-0.52 ms, this one 0.19 ms per signature). The key is the profile's agency's, active,
# by id (services/keys.py :func:`~signing_service.services.keys.active_key`).
_PROFILE_AND_KEY = (
    select(SigningProfile, SigningKey)
    .outerjoin(
        SigningKey,
        and_(
            SigningKey.id == SigningProfile.key_id,
            SigningKey.agency_id == SigningProfile.agency_id,
            SigningKey.disabled_at.is_(None),
        ),
    )
    .where(
        SigningProfile.name == bindparam("name"),
        SigningProfile.agency_id == bindparam("agency_id"),
        SigningProfile.disabled_at.is_(None),
    )
)


def _profile_and_key(
    services: Services, agency: Agency, name: str, level: str | None
) -> tuple[SigningProfile, SignatureLevel, LoadedKey, str]:
    """The profile, the level, the profile's opened key and its kind (pkcs12, pkcs11, csc:
    the signature metric's label): both rows read in one query, the key opened after the
    transaction. The rows are read on every request (a disabled key or profile is refused at
    once); the opened key is cached by its registry id (services/keys.py). Errors as
    :func:`_find_profile`, :func:`_level` and
    :func:`~signing_service.services.keys.signing_key_row`, in that order."""
    from signing_service.services.keys import SIGNING_KINDS, open_signing_key

    if not PROFILE_NAME.match(name):
        # A name no profile can have (a NUL, overlong text) never reaches the database.
        raise errors.ProfileNotFound()
    with services.db.transaction() as session:
        found = session.execute(_PROFILE_AND_KEY, {"name": name, "agency_id": agency.id}).first()
    if found is None:
        # Another agency's profile is indistinguishable from a missing one.
        raise errors.ProfileNotFound()
    profile, row = found
    chosen = _level(level, profile)
    if profile.two_step:
        raise errors.ProfileNeedsTwoStep()
    if row is None or row.kind not in SIGNING_KINDS:
        raise errors.ProfileKeyMissing()
    return profile, chosen, open_signing_key(services, agency, row), row.kind


def _level(requested: str | None, profile: SigningProfile) -> SignatureLevel:
    try:
        return SignatureLevel.parse(requested or profile.level)
    except ValueError:
        raise errors.InvalidLevel() from None


def _retry_after(services: Services) -> dict[str, str]:
    return {"Retry-After": str(services.settings.retry_after_seconds)}


async def check_signer(
    services: Services, cert: x509.Certificate, chain: Sequence[x509.Certificate]
) -> SignerCheck:
    """The checks before every signature (TT 15/2025 Art. 5; signing/certcheck.py), with
    their error codes: one place for all flows and levels, and nothing switches them off.

    422 ``SIGNER_CERT_EXPIRED`` | ``SIGNER_CERT_IS_CA`` | ``SIGNER_CERT_KEY_USAGE`` |
    ``ALGORITHM_NOT_ALLOWED`` | ``SIGNER_CERT_UNTRUSTED`` | ``SIGNER_CERT_REVOKED``; 503
    ``SIGNER_CERT_STATUS_UNKNOWN`` with ``Retry-After`` (responder unreachable, no CRL).
    Returns what the check relied on: the signature's evidence (services/evidence.py).
    """
    try:
        return await services.checker.async_check(cert, tuple(chain))
    except SignerCheckFailure as failure:
        error = CHECK_ERRORS[failure.reason]
        headers = _retry_after(services) if error.status == 503 else None
        raise error(details={"reason": failure.detail}, headers=headers) from None


PDF_INPUT_ERRORS: dict[str, type[errors.ServiceError]] = {
    "encrypted": errors.EncryptedPdf,
    "certified_no_changes": errors.DocumentCertifiedNoChanges,
    "certified_field_required": errors.DocumentCertifiedFieldRequired,
    "certified_field_locked": errors.SignatureFieldLocked,
    "signed_damaged": errors.SignedPdfDamaged,
    "pdfa1_no_transparency": errors.Pdfa1NoTransparency,
    "too_complex": errors.DocumentTooComplex,
    "active_content": errors.SigningActiveContent,
}


def signing_limit(services: Services, pdf: bytes) -> int:
    """The size limit of a document to sign: ``max_upload_bytes`` (the national exchange
    limit) for a new document; ``max_document_bytes`` for one that already carries signatures
    (countersigning), so that a document the service signed is accepted back."""
    settings = services.settings
    if len(pdf) <= settings.max_upload_bytes:
        # Within both limits (max_document_bytes is max_upload_bytes plus headroom): the search
        # for a signature dictionary (a scan of the whole file) is not needed to decide.
        return settings.max_upload_bytes
    return (
        settings.max_document_bytes if repair.carries_signatures(pdf) else settings.max_upload_bytes
    )


def check_signed_size(services: Services, signed: bytes) -> None:
    """413 ``FILE_TOO_LARGE`` when a signed result is larger than the service accepts back
    (``max_document_bytes``): it could be neither verified nor countersigned here."""
    limit = services.settings.max_document_bytes
    if len(signed) > limit:
        raise errors.PayloadTooLarge(
            f"Tài liệu sau khi ký sẽ vượt quá dung lượng tối đa ({limit // (1024 * 1024)} MB) "
            "mà dịch vụ có thể kiểm tra lại; không lưu kết quả.",
            details={"max_bytes": limit, "signed_bytes": len(signed)},
        )


def repair_input(pdf: bytes) -> bytes:
    """``pdf`` rebuilt by qpdf (signing/repair.py), or :class:`PdfInputError`:
    ``signed_damaged`` when it carries signatures, ``malformed`` when it cannot be rebuilt."""
    try:
        return repair.repair(pdf)
    except repair.SignedDocumentDamaged:
        raise PdfInputError("signed_damaged") from None
    except repair.RepairFailed as e:
        log.info("repair failed: %s", e)
        raise PdfInputError("malformed", str(e)) from None


def pdf_input_error(error: PdfInputError) -> errors.ServiceError:
    """The 422 for an input the engine cannot sign (``MALFORMED_PDF`` unless the reason has
    its own code). A certification refusal keeps the technical term (``details.docmdp``, e.g.
    "DocMDP P=1", ISO 32000-1 §12.8.2.2) out of the people-facing message."""
    if error.reason.startswith("certified_") and error.detail:
        return PDF_INPUT_ERRORS[error.reason](details={"docmdp": error.detail})
    if error.reason == "too_complex":
        return errors.DocumentTooComplex(details={"limit": error.detail})
    if error.reason == "active_content":
        found = error.detail.split(", ")
        return errors.SigningActiveContent(
            details={"found": found, "found_text": describe_active(found)}
        )
    return PDF_INPUT_ERRORS.get(error.reason, errors.MalformedPdf)()


def timestamp_error(services: Services, failure: TimestampCheckFailure) -> errors.ServiceError:
    """The service error for a refused timestamp token (502, or 503 with ``Retry-After`` when
    the TSA certificate's status is unknown)."""
    error = TIMESTAMP_ERRORS[failure.reason]
    headers = _retry_after(services) if error.status == 503 else None
    return error(details={"reason": failure.detail}, headers=headers)


def timestamp_unavailable(services: Services, message: str | None = None) -> errors.ServiceError:
    return errors.TimestampUnavailable(message, headers=_retry_after(services))


def checked_timestamper(services: Services, url: str) -> CheckedTimeStamper:
    """The TSA client for ``url`` whose every token is checked before use (signing/tsa.py)."""
    return CheckedTimeStamper(services.timestamper(url), services.token_checker)


def _options(
    profile: SigningProfile,
    level: SignatureLevel,
    field_name: str | None = None,
    *,
    services: Services | None = None,
    appearance: AppearanceRequest | None = None,
) -> SignOptions:
    # The TSA is passed as a timestamper built from the operator's allowlist (tsa_url_of).
    # ``field_name``: the request's prepared signature field (else the profile's). With
    # ``services``: the appearance kinds (issue 10), images loaded, request fields applied.
    return SignOptions(
        level=level,
        reason=profile.reason,
        location=profile.location,
        appearance=(
            resolve_appearance(services, profile.agency_id, profile.appearance, appearance)
            if services is not None
            else appearance_spec(profile.appearance)
        ),
        field_name=field_name,
    )


def tsa_url_of(services: Services, profile: SigningProfile) -> str:
    """The URL of the profile's TSA, from the operator's allowlist (TIMESTAMP_UNAVAILABLE when
    it names none that is configured)."""
    return allowlists.tsa_url(services, profile.tsa)


async def _check_and_sign(
    services: Services,
    key: LoadedKey,
    profile: SigningProfile,
    level: SignatureLevel,
    pdf: bytes,
    field_name: str | None = None,
    appearance: AppearanceRequest | None = None,
    now: datetime | None = None,
    qr: QrContent | None = None,
    facts: SignedFacts | None = None,
    input_prefix: prefix_digest.CoveredPrefix | None = None,
    countersigning: BeforeCountersigning | None = None,
) -> tuple[bytes, bool, Registration, SignerCheck]:
    """The signed document, whether the input had to be repaired first, what the
    registry records of its appearance, and what the pre-signing check relied on.
    ``facts``: filled with the signature's field name and CMS (engine.SignedFacts).
    ``input_prefix``: the hash of ``pdf`` already computed for the records
    (prefix_digest.covering); the signature's digest continues from it.
    ``countersigning``: the check of the signatures ``pdf`` already carries
    (existing.Countersigning), run by the engine before it signs."""
    check = await check_signer(services, key.signing_cert, key.chain)
    options = replace(
        _options(profile, level, field_name, services=services, appearance=appearance), qr=qr
    )
    registration = Registration.of(options)
    timestamper = None
    if level.needs_timestamp:
        timestamper = checked_timestamper(services, tsa_url_of(services, profile))
    vc = None
    if level.needs_revocation_info:
        # A factory: each context is built after the timestamp whose validation data it
        # fetches, so that data is later than it (ETSI EN 319 102-1; EU DSS warns otherwise).
        # It is also never the signer check's (cached) answer.
        vc = functools.partial(services.trust.validation_context, other_certs=key.chain)
    try:
        try:
            return (
                await async_sign_pdf(
                    pdf,
                    key,
                    options,
                    validation_context=vc,
                    timestamper=timestamper,
                    now=now,
                    facts=facts,
                    input_prefix=input_prefix,
                    countersigning=countersigning,
                ),
                False,
                registration,
                check,
            )
        except PdfInputError as e:
            if e.reason != "unreadable":
                raise
        # A document viewers open but pyHanko cannot read (its cross-reference table, offsets
        # or header are damaged): rebuilt by qpdf, then signed (and the answer says so); a
        # signed one is refused instead (signing/repair.py). A document that reads but is
        # malformed (a number where a dictionary belongs) is not "repaired": MALFORMED_PDF.
        rebuilt = await asyncio.to_thread(repair_input, pdf)
        return (
            await async_sign_pdf(
                rebuilt,
                key,
                options,
                validation_context=vc,
                timestamper=timestamper,
                now=now,
                facts=facts,
                # Signatures in the rebuilt document were in the upload too, and the rewrite
                # has broken them: refused, whatever the raw pre-check missed.
                countersigning=_signed_after_repair,
            ),
            True,
            registration,
            check,
        )
    except PdfInputError as e:
        raise pdf_input_error(e) from None
    except QrOnSignedDocument:
        raise errors.QrOnSignedDocument() from None
    except TimestampCheckFailure as failure:
        # Every token (signature and document timestamps) is checked before it is embedded.
        raise timestamp_error(services, failure) from None
    except (TimestampError, TimestampRequestError, requests.RequestException):
        raise timestamp_unavailable(services) from None
    except KeySourceError as e:
        # Raised while signing by keys that act per signature (remote signing).
        from signing_service.services.keys import key_error

        raise key_error(e) from None
    except PlacementError as e:
        raise placement_error(e) from None
    except SigningError as e:
        log.warning("signing failed: %s", type(e).__name__)
        raise errors.SigningFailed() from None


async def _signed_after_repair() -> None:
    raise PdfInputError("signed_damaged")


def placement_error(error: PlacementError) -> errors.ServiceError:
    """The 422 of a placement failure, naming the field when one was asked for."""
    details = {"field_name": error.detail} if error.code.startswith("SIGNATURE_FIELD") else None
    return errors.PLACEMENT_ERRORS[error.code](details=details)


def sign_document(
    services: Services,
    agency: Agency,
    *,
    profile_name: str,
    pdf: bytes,
    level: str | None = None,
    filename: str | None = None,
    dossier_code: str | None = None,
    result_code: str | None = None,
    actor: str,
    authorization: str | None = None,
    field_name: str | None = None,
    appearance: AppearanceRequest | None = None,
    qr: QrRequest | None = None,
    idempotency_key: str | None = None,
) -> SignResult:
    """``idempotency_key``: the request's ``Idempotency-Key`` (:func:`check_idempotency_key`);
    the same key and the same request again answer with the first signature
    (``replayed=True``, nothing signed, no second result code); the same key with another
    request raises 409 ``IDEMPOTENCY_KEY_CONFLICT``; of two concurrent requests with one key
    only one document is stored (the other answers as a replay).

    ``authorization``: the officer's PIN/OTP for a remote-signing (csc:) profile, passed
    through to the provider and never stored or logged. ``dossier_code`` and
    ``result_code``: see :func:`signing_service.services.documents.check_codes`.
    ``field_name``: a prepared empty signature field to fill (SIGNATURE_FIELD_NOT_FOUND /
    _ALREADY_SIGNED otherwise). ``appearance``: the request's appearance fields (kind, copy
    kind, document number) over the profile's. ``qr``: add a QR code to page 1
    (:func:`qr_content`; 422 ``QR_LINK_NOT_CONFIGURED``, ``INVALID_PROCEDURE_CODE``,
    ``QR_ON_SIGNED_DOCUMENT``)."""
    check_pdf_upload(pdf, signing_limit(services, pdf))
    check_signing_input(pdf)
    codes = check_codes(dossier_code, result_code, agency.code)
    if qr is not None:
        qr = check_qr_request(services, qr, agency.code)
    idempotency = None
    # Hashed once: the request's digest, the stored original's and the signed document's
    # (continued over the appended revision) and the signature's own digest over its
    # /ByteRange, which starts with the whole input (signing/prefix_digest.py).
    input_prefix = prefix_digest.covering(pdf)
    input_hash = input_prefix.hasher()
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
        digest = request_digest(
            pdf,
            pdf_sha256=input_hash.hexdigest(),
            profile=profile_name,
            level=level,
            filename=filename,
            dossier_code=dossier_code,
            result_code=result_code,
            field_name=field_name,
            appearance=appearance,
            qr=qr,
        )
        idempotency = (idempotency_key, digest)
        # Before anything is checked against the current state (a result code the first
        # request took, a profile disabled since): a replay answers what was done.
        replayed = replay_signature(services, agency, idempotency_key, digest)
        if replayed is not None:
            return replayed
    profile, chosen, key, key_kind = _profile_and_key(services, agency, profile_name, level)
    key = with_authorization(key, authorization)
    try:
        return _sign_one(
            services,
            agency,
            profile,
            chosen,
            key,
            pdf,
            filename,
            codes,
            actor,
            field_name,
            appearance=appearance,
            qr=qr,
            key_kind=key_kind,
            idempotency=idempotency,
            input_hash=input_hash,
            input_prefix=input_prefix,
        )
    except IntegrityError:
        # A concurrent request with the same key committed first (the unique constraint on
        # (agency, key) refused this one): store_signed removed what this one wrote; answer
        # as the replay it is.
        if idempotency is not None:
            replayed = replay_signature(services, agency, *idempotency)
            if replayed is not None:
                return replayed
        raise


def check_idempotency_key(key: str | None) -> str | None:
    """``key`` when it is a valid ``Idempotency-Key`` (1–128 of ``A-Z a-z 0-9 . _ : -``, the
    attachments' rule), ``None`` for none; 422 ``INVALID_IDEMPOTENCY_KEY`` otherwise."""
    from signing_service.services.attachments import check_idempotency_key as check

    return check(key)


def request_digest(
    pdf: bytes,
    *,
    profile: str,
    level: str | None,
    filename: str | None,
    dossier_code: str | None,
    result_code: str | None,
    field_name: str | None,
    appearance: AppearanceRequest | None,
    qr: QrRequest | None,
    extra: dict[str, str | None] | None = None,
    pdf_sha256: str | None = None,
) -> str:
    """SHA-256 (hex) of what a signing request asks: the file's digest and every option, as
    canonical JSON. Two requests with one ``Idempotency-Key`` are the same request when their
    digests are equal. The officer's PIN/OTP (``authorization``) is left out: it is a
    credential, never stored, and a one-time code differs on a retry of the same request.
    ``extra``: further fields of the request (two-step: the officer and the certificate).
    ``pdf_sha256``: the file's SHA-256 (hex) when the caller has it already."""
    import json

    fields = {
        "sha256": pdf_sha256 or hashlib.sha256(pdf).hexdigest(),
        "profile": profile,
        "level": level or None,
        "filename": filename,
        "dossier_code": dossier_code or None,
        "result_code": result_code or None,
        "field_name": field_name or None,
        "appearance": (
            [appearance.kind, appearance.copy_kind, appearance.document_number]
            if appearance is not None
            else None
        ),
        "qr": ([qr.procedure_code, qr.document_name, qr.applicant_id] if qr is not None else None),
        **(extra or {}),
    }
    body = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def replay_signature(
    services: Services, agency: Agency, key: str, digest: str
) -> SignResult | None:
    """The answer of the agency's signature stored under ``key`` (``replayed=True``), or
    ``None`` when there is none. Raises 409 ``IDEMPOTENCY_KEY_CONFLICT`` when that signature
    answered another request (``digest``: :func:`request_digest`): the same key with another
    file, profile, option or code never gets the first answer."""
    import json

    from signing_service.store.models import AuditEntry

    with services.db.transaction() as session:
        signature = session.scalars(
            select(Signature).where(
                Signature.agency_id == agency.id, Signature.idempotency_key == key
            )
        ).first()
        if signature is None:
            return None
        if signature.request_sha256 != digest:
            raise errors.IdempotencyConflict(
                IDEMPOTENCY_CONFLICT_MESSAGE,
                details={"signature_id": signature.id},
            )
        output = session.get(Document, signature.output_document_id)
        original = session.get(Document, signature.input_document_id)
        assert output is not None and original is not None
        # The registry id and the repair flag of the first answer are in its audit entry
        # (the registry row may since name a newer version of the document).
        entry = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "signature.created", AuditEntry.subject == signature.id
            )
        ).first()
        details = json.loads(entry.details) if entry is not None else {}
        public_id = details.get("public_id")
        return SignResult(
            signature_id=signature.id,
            level=signature.level,
            profile=signature.profile.name,
            signed_at=api_time(signature.signed_at),
            certificate_sha256=signature.certificate_sha256,
            document=DocumentView.of(output),
            input_document=DocumentView.of(original),
            repaired=bool(details.get("repaired", False)),
            public_id=public_id,
            link=(public_link(services.settings.public_base_url, public_id) if public_id else None),
            replayed=True,
            existing_signatures=tuple(
                existing.ExistingSignature.from_dict(item)
                for item in details.get("existing_signatures", ())
                if isinstance(item, dict)
            ),
        )


def _sign_one(
    services: Services,
    agency: Agency,
    profile: SigningProfile,
    level: SignatureLevel,
    key: LoadedKey,
    pdf: bytes,
    filename: str | None,
    codes: DocumentCodes,
    actor: str,
    field_name: str | None = None,
    *,
    appearance: AppearanceRequest | None = None,
    qr: QrRequest | None = None,
    key_kind: str | None = None,
    idempotency: tuple[str, str] | None = None,
    input_hash: Any = None,
    input_prefix: prefix_digest.CoveredPrefix | None = None,
    flow: str = "one-step",
) -> SignResult:
    """Sign an already checked upload and store it: one document, all or nothing.
    ``key_kind``: the registered key's kind, for the signature metric. ``idempotency``:
    (Idempotency-Key, request digest) kept on the signature (:func:`store_signed`).
    ``input_hash``, ``input_prefix``: ``pdf``'s hash as records and signature continue it
    (:func:`store_signed`, prefix_digest.covering). A document that already carries
    signatures is verified before it is signed (services/existing.py): 422
    ``EXISTING_SIGNATURE_INVALID``, audited as ``signature.refused`` (``flow``: one-step or
    batch), nothing stored."""
    check_result_code_available(services, agency.id, codes)
    # One claimed signing time for the stamp, /M, the QR code and the answer's signed_at.
    moment = signing_moment()
    # The signed document's registry id is chosen now: the QR code's link names it.
    public_id = new_public_id()
    content = (
        qr_content(services, qr, codes, filename, moment, public_id) if qr is not None else None
    )
    facts = SignedFacts()
    countersigning = existing.Countersigning(services, pdf)
    try:
        signed, repaired, registration, check = run_sync(
            _check_and_sign(
                services,
                key,
                profile,
                level,
                pdf,
                field_name,
                appearance=appearance,
                now=moment,
                qr=content,
                facts=facts,
                input_prefix=input_prefix,
                countersigning=countersigning,
            )
        )
    except errors.ExistingSignatureInvalid as refusal:
        existing.audit_refusal(
            services,
            actor=actor,
            agency_code=agency.code,
            subject=input_hash.hexdigest()
            if input_hash is not None
            else hashlib.sha256(pdf).hexdigest(),
            refusal=refusal,
            flow=flow,
            profile=profile.name,
        )
        raise
    return store_signed(
        services,
        agency,
        profile,
        level.value,
        pdf,
        signed,
        key.signing_cert,
        filename=filename,
        dossier_code=codes.dossier_code,
        result_code=codes.result_code,
        actor=actor,
        signed_at=moment,
        repaired=repaired,
        public_id=public_id,
        registration=registration,
        key_kind=key_kind,
        check=check,
        idempotency=idempotency,
        embedded=(
            (facts.field_name, facts.signature_cms) if facts.signature_cms is not None else None
        ),
        input_hash=input_hash,
        existing_signatures=tuple(countersigning.found or ()),
    )


def store_signed(
    services: Services,
    agency: Agency,
    profile: SigningProfile,
    level: str,
    pdf: bytes,
    signed: bytes,
    signing_cert: x509.Certificate,
    *,
    filename: str | None,
    dossier_code: str | None,
    actor: str,
    in_transaction: Callable[[Session, str], None] | None = None,
    signed_at: datetime | None = None,
    result_code: str | None = None,
    output_id: str | None = None,
    repaired: bool = False,
    public_id: str | None = None,
    registration: Registration | None = None,
    key_kind: str | None = None,
    check: SignerCheck | None = None,
    idempotency: tuple[str, str] | None = None,
    embedded: tuple[str | None, bytes] | None = None,
    input_hash: Any = None,
    existing_signatures: tuple[existing.ExistingSignature, ...] = (),
) -> SignResult:
    """Store the signed document and commit its records and audit entry, all or nothing.

    ``existing_signatures``: the signatures ``pdf`` carried, as judged before signing
    (services/existing.py); the audit entry (``existing_signatures``) and the answer list
    them.

    ``input_hash``: a ``hashlib.sha256``-like object (``copy``, ``update``, ``hexdigest``;
    prefix_digest.HexHash) over exactly ``pdf`` when the caller hashed it already: not hashed
    a second time.

    ``embedded``: (field name, CMS DER) of the new signature as the engine embedded it
    (engine.SignedFacts): its evidence is taken from them instead of a read-back of
    ``signed`` (services/evidence.py :func:`~signing_service.services.evidence.capture`).

    ``idempotency``: (Idempotency-Key, request digest) kept on the signature row; a key the
    agency already used makes the transaction fail (IntegrityError, unique per agency) and
    nothing is kept: of two concurrent requests with one key, one document.

    ``key_kind``: the kind of key that signed (pkcs12, pkcs11, csc; officer for two-step),
    counted with the level and the agency in ``signing_service_signatures_total`` once the
    transaction has committed.

    ``check``: what the pre-signing check relied on; kept with the signature as its evidence
    (TT 15/2025 Art. 5–6, services/evidence.py), with the signature's timestamp token and its
    field name, in the same transaction.

    ``repaired``: the input was rebuilt before signing (signing/repair.py); the audit entry
    and the answer say so.

    ``in_transaction(session, signature_id)`` runs inside the same transaction (the two-step
    flow uses it to mark its session completed exactly once); if it raises, nothing is kept.
    ``signed_at``: the signature's claimed signing time when it is not now (two-step: fixed
    at step 1, the time on the stamp and in /M). ``result_code``: a checked result code or
    ``auto``, resolved in the transaction (:func:`resolve_result_code`) and kept on the signed
    document only (the original is the unsigned draft). ``output_id``: the signed document's
    id when it was chosen before signing; its object is then stored under a fresh key, not
    one derived from that id (two attempts with one id never share an object).

    The signed document is registered in the registry of issued documents in the same
    transaction (services/registry.py): under ``public_id`` when it was chosen before signing
    (a QR code links to its record), else a fresh one; ``registration``: the appearance kind
    and document number it records.
    """
    check_signed_size(services, signed)
    now = datetime.now(UTC)
    public_id = public_id or new_public_id()
    registration = registration or Registration()
    # An id chosen before signing (two-step: at step 1) is not this attempt's own: its
    # object goes under a key never used before, so that a failed attempt's cleanup can only
    # ever remove what it wrote itself (red team 21b, R21B-1).
    chosen_before = output_id is not None
    input_id, output_id = new_id(), output_id or new_id()
    prefix = f"{agency.code}/{now:%Y/%m}"

    def document(doc_id: str, kind: str, data: bytes, sha256: str, name: str | None) -> Document:
        object_name = new_id() if chosen_before and doc_id == output_id else doc_id
        return Document(
            id=doc_id,
            agency_id=agency.id,
            kind=kind,
            sha256=sha256,
            size=len(data),
            media_type="application/pdf",
            storage_key=f"{prefix}/{object_name}.pdf",
            filename=name,
            dossier_code=dossier_code,
            created_at=now,
        )

    incremental = signed.startswith(pdf)
    input_hash = input_hash.copy() if input_hash is not None else hashlib.sha256(pdf)
    if incremental:
        # The signed PDF is an incremental update of the original: its digest continues the
        # original's over the appended bytes (one pass over the 1 MB document, not two).
        output_hash = input_hash.copy()
        output_hash.update(memoryview(signed)[len(pdf) :])
    else:
        output_hash = hashlib.sha256(signed)
    input_doc = document(input_id, "original", pdf, input_hash.hexdigest(), filename)
    output_doc = document(
        output_id, "signed", signed, output_hash.hexdigest(), _signed_name(filename)
    )
    if level == "B-LTA":
        # Preservation (issue 12) plans renewals with a query on this column: when the
        # newest document timestamp's TSA certificate ends (services/extension.py).
        from signing_service.services.extension import newest_timestamp_expiry

        output_doc.archive_tsa_not_after = newest_timestamp_expiry(signed)
    signature = Signature(
        id=new_id(),
        agency_id=agency.id,
        profile_id=profile.id,
        certificate_sha256=sha256_fingerprint(signing_cert),
        level=level,
        signed_at=signed_at or now,
        input_document_id=input_id,
        output_document_id=output_id,
        idempotency_key=idempotency[0] if idempotency is not None else None,
        request_sha256=idempotency[1] if idempotency is not None else None,
    )
    captured = evidence.capture(
        check,
        signed,
        signing_cert,
        signature_id=signature.id,
        agency_code=agency.code,
        level=level,
        profile=profile.name,
        signed_at=signed_at or now,
        documents={
            "input": {"id": input_id, "sha256": input_doc.sha256},
            "output": {"id": output_id, "sha256": output_doc.sha256},
        },
        embedded=embedded,
    )
    signature.field_name = captured.field_name
    to_write = [(output_doc, signed)]
    if incremental:
        # Keep one object: the original is the signed document's prefix.
        input_doc.storage_key = None
        input_doc.content_of = output_id
    else:
        to_write.insert(0, (input_doc, pdf))
    # The registry's second key (new user 22 #1): what the new signature covers and its value.
    # Its CMS's messageDigest is that SHA-256 already (PAdES, SHA-256): no second pass.
    covered = signed_sha256(embedded[1]) if embedded is not None else None
    signature_sha256 = (
        signature_key(covered, embedded[1]) if covered is not None and embedded else None
    )
    if signature_sha256 is None:
        last = signature_digests(signed, 1)
        signature_sha256 = last[0][0] if last and last[0][1] == len(signed) else None
    written: list[str] = []
    new_evidence: list[str] = []
    try:
        for doc, data in to_write:
            assert doc.storage_key is not None
            services.store.put(doc.storage_key, data, sha256=doc.sha256)
            written.append(doc.storage_key)
        # Evidence objects are content-addressed and may be shared with other signatures.
        new_evidence, shared = evidence.store_objects(services, captured)
        with services.db.transaction() as session:
            # The dossier's counter row before the audit head: every writer takes the two
            # locks in this order.
            output_doc.result_code = resolve_result_code(
                session, agency.id, DocumentCodes(dossier_code, result_code)
            )
            # Plain table INSERTs of the three rows, not the unit of work: nothing in this
            # transaction reads them back as objects, and the flush's bookkeeping cost ~1 ms
            # of CPU per signature. The signed document first (the original's content_of
            # names it), then the signature that names both.
            for row in (output_doc, input_doc, signature):
                session.execute(type(row).__table__.insert(), [_column_values(row)])
            register_signed(
                session,
                agency_id=agency.id,
                document=output_doc,
                public_id=public_id,
                signed_at=signed_at or now,
                input_sha256=input_doc.sha256,
                kind=registration.kind,
                document_number=registration.document_number,
                signature_sha256=signature_sha256,
            )
            if in_transaction is not None:
                in_transaction(session, signature.id)
            audit.append(
                session,
                actor=actor,
                action="signature.created",
                agency_code=agency.code,
                subject=signature.id,
                details={
                    "profile": profile.name,
                    "level": level,
                    "certificate_sha256": signature.certificate_sha256,
                    "input_sha256": input_doc.sha256,
                    "output_sha256": output_doc.sha256,
                    "output_document": output_id,
                    "dossier_code": dossier_code,
                    "result_code": output_doc.result_code,
                    "repaired": repaired,
                    "public_id": public_id,
                    "evidence_manifest_sha256": captured.manifest_sha256,
                    **(
                        {"existing_signatures": [s.to_dict() for s in existing_signatures]}
                        if existing_signatures
                        else {}
                    ),
                },
            )
            # After the audit entry: under the chain's lock (evidence._ensure_shared).
            evidence.add_rows(
                services,
                session,
                captured,
                shared,
                signature_id=signature.id,
                agency_id=agency.id,
                document_kind=registration.kind,
            )
    except BaseException as e:
        # A connection lost during COMMIT leaves the outcome unknown: keep the objects (an
        # orphan is reconciled; removing an object its committed row names loses the document).
        for storage_key in [] if connection_lost(e) else written:
            try:
                services.store.delete(storage_key)
            except Exception:  # noqa: BLE001 - reconcile will find it
                log.error("could not remove orphan object %s", storage_key)
        try:
            # Only those no committed row refers to, under the audit chain's lock: another
            # signature may have found them stored meanwhile and relied on them.
            evidence.release_objects(services, new_evidence)
        except Exception:  # noqa: BLE001 - reconcile will find them
            log.error("could not remove %d orphan evidence objects", len(new_evidence))
        if isinstance(e, StorageUnavailableError):
            raise errors.StorageUnavailable() from None
        raise
    metrics.observe_signature(level, key_kind, agency.code)
    return SignResult(
        signature_id=signature.id,
        level=level,
        profile=profile.name,
        signed_at=api_time(signed_at or now),
        certificate_sha256=signature.certificate_sha256,
        document=DocumentView.of(output_doc),
        input_document=DocumentView.of(input_doc),
        repaired=repaired,
        public_id=public_id,
        link=public_link(services.settings.public_base_url, public_id),
        existing_signatures=existing_signatures,
    )


def _column_values(row: Any) -> dict[str, Any]:
    """The column values set on a new, transient ORM ``row``, by column name (those left
    unset take their column defaults at the INSERT, as in a flush)."""
    state = sa_inspect(row)
    return {
        attr.columns[0].name: state.dict[attr.key]
        for attr in state.mapper.column_attrs
        if attr.key in state.dict
    }


@dataclass(frozen=True)
class Registration:
    """What the registry of issued documents records of a signature's appearance: its kind
    (person, seal, copy, annex, digitised; ``none`` when invisible; ``None`` for a legacy
    stamp without kind) and the document number (số, ký hiệu) it prints, if any."""

    kind: str | None = None
    document_number: str | None = None

    @classmethod
    def of(cls, options: SignOptions) -> Registration:
        from signing_service.signing.appearance import KindAppearance

        appearance = options.appearance
        if appearance is None:
            return cls("none")
        if isinstance(appearance, KindAppearance):
            return cls(appearance.kind, appearance.document_number)
        return cls()

    def to_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "document_number": self.document_number}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Registration:
        data = data or {}
        return cls(data.get("kind"), data.get("document_number"))


@dataclass(frozen=True)
class QrRequest:
    """A request for a QR code on page 1: the optional procedure code and document name
    (the file's name without ``.pdf`` when absent)."""

    procedure_code: str | None = None
    document_name: str | None = None
    applicant_id: str | None = None


def check_qr_request(
    services: Services, request: QrRequest, agency_code: str | None = None
) -> QrRequest:
    """``request`` checked before anything is signed: the service must know its public base
    URL (``QR_LINK_NOT_CONFIGURED``), the procedure code must be one, with no other agency's
    suffix than ``agency_code`` (``INVALID_PROCEDURE_CODE``), the applicant's identifier one
    (``INVALID_APPLICANT_ID``)."""
    if not services.settings.public_base_url:
        raise errors.QrLinkNotConfigured()
    return QrRequest(
        check_procedure_code(request.procedure_code, agency_code),
        request.document_name or None,
        check_applicant_id(request.applicant_id),
    )


def verification_link(base_url: str, public_id: str) -> str:
    """The link to the document's record in the registry of issued documents:
    ``SIGNING_SERVICE_PUBLIC_BASE_URL`` followed by ``/xac-minh/{public_id}`` (the public
    page), or by the id alone when the base ends with ``=`` (a portal's query parameter)."""
    link = public_link(base_url, public_id)
    assert link is not None
    return link


def qr_content(
    services: Services,
    request: QrRequest,
    codes: DocumentCodes,
    filename: str | None,
    moment: datetime,
    public_id: str,
) -> QrContent:
    """What a signed document's QR code carries (Thông tư 01/2023/TT-VPCP): the dossier code,
    the procedure code, the document's name, the issuing system, the time of issue (the
    claimed signing time, +07:00) and the verification link to the document's registry
    record ``public_id`` (:func:`verification_link`)."""
    base = services.settings.public_base_url
    if not base:
        raise errors.QrLinkNotConfigured()
    name = request.document_name
    if name is None and filename:
        name = filename[:-4] if filename.lower().endswith(".pdf") else filename
    return QrContent(
        dossier_code=codes.dossier_code,
        procedure_code=request.procedure_code,
        document_name=name,
        issuing_system=services.settings.issuing_system,
        issued_at=vietnam_time(moment),
        link=verification_link(base, public_id),
        applicant_id=request.applicant_id,
    )


def _signed_name(filename: str | None) -> str | None:
    if not filename:
        return None
    stem = filename[:-4] if filename.lower().endswith(".pdf") else filename
    return f"{stem}.signed.pdf"


def sign_batch(
    services: Services,
    agency: Agency,
    *,
    profile_name: str,
    items: list[tuple[str | None, bytes]],
    level: str | None = None,
    actor: str,
    authorization: str | None = None,
    field_name: str | None = None,
    appearance: AppearanceRequest | None = None,
    codes: Sequence[DocumentCodes] | None = None,
    idempotency_key: str | None = None,
    client_id: int | None = None,
) -> list[SignResult | errors.ServiceError]:
    """Ký hàng loạt: one profile, one authorisation, per-document results. ``field_name``: the
    prepared signature field to fill in every document (a document without it fails alone).

    ``idempotency_key``: the request's ``Idempotency-Key`` (:func:`check_batch_idempotency_key`).
    Each document is kept under ``{key}#{n}`` (n from 1, in file order; ``#`` cannot occur in a
    client's key, so a batch never meets a single request's key) with a digest that covers
    the whole batch (every file, code and option). Resent as it was: the documents signed the
    first time answer as replays (``replayed=True``, nothing signed or audited again) and
    only the others are tried again, e.g. after a timestamp server was down half-way. The
    same key with another batch: 409 ``IDEMPOTENCY_KEY_CONFLICT`` for the whole request,
    nothing signed.

    ``codes``: each document's checked codes (:func:`check_codes`), in file order, one per
    item (``None``: no codes for any).

    What concerns the whole batch (profile, level, the request's appearance fields, key, the
    signer's certificate) is checked once, before any document, and refuses the whole request
    (nothing is signed). Each document
    is then signed and stored all-or-nothing on its own, and its result is the
    :class:`SignResult` or the :class:`errors.ServiceError` that refused it:

    - a document the service refuses (a broken PDF, a bad file name) fails alone;
    - an unexpected failure (a bug) fails that document alone as ``INTERNAL_ERROR``, logged:
      the documents already signed are committed, so their ids must reach the client; a 500
      for the whole request would hide them (issue 9);
    - a dependency that is down (a 503: timestamp server, storage, key token) fails that
      document, and the documents after it are not attempted: they carry the same error with
      ``details.attempted = false`` (each would wait for the same time-out);
    - before each document after the first, the API key ``client_id`` (the request's) must
      still be usable and the profile must still name the same enabled key
      (:func:`_batch_still_allowed`): an operator's ``client revoke`` or ``key disable`` stops
      a batch in flight (red team 23b, R23B-3: a revoked key's batch went on signing). The
      documents from there on carry that refusal with ``details.attempted = false``.
    """
    if codes is not None and len(codes) != len(items):
        raise ValueError("one DocumentCodes per batch item")
    keyed: list[tuple[str, str] | None] = [None] * len(items)
    replays: dict[int, SignResult] = {}
    if idempotency_key is not None:
        keyed = _batch_idempotency(
            idempotency_key,
            items,
            profile=profile_name,
            level=level,
            field_name=field_name,
            appearance=appearance,
            codes=codes,
        )
        # Before anything is checked against the current state, as for one document: a
        # resend answers what was done (409 here when the key belongs to another batch).
        replays = _batch_replays(services, agency, idempotency_key, keyed)
        if len(replays) == len(items):
            return [replays[index] for index in range(len(items))]
    try:
        profile, chosen, key, key_kind = _profile_and_key(services, agency, profile_name, level)
        # The request's appearance fields concern every document: refused before any is
        # signed.
        resolve_appearance(services, profile.agency_id, profile.appearance, appearance)
        run_sync(check_signer(services, key.signing_cert, key.chain))
    except errors.ServiceError as refused:
        if not replays:
            raise
        # A resend of a batch partly signed before (its profile since disabled, its key
        # revoked, ...): what was signed still answers, the rest carries the refusal; a
        # whole-request error would hide the signed documents' ids (red team 15, F2).
        return [replays.get(index) or _not_attempted(refused) for index in range(len(items))]
    results: list[SignResult | errors.ServiceError] = []
    key = with_authorization(key, authorization)
    unavailable: errors.ServiceError | None = None
    attempted = 0
    for index, (filename, pdf) in enumerate(items):
        if index in replays:
            results.append(replays[index])
            continue
        if unavailable is not None:
            results.append(_not_attempted(unavailable))
            continue
        if attempted:
            try:
                _batch_still_allowed(services, agency, client_id, profile_name, level, key)
            except errors.ServiceError as withdrawn:
                unavailable = withdrawn
                results.append(_not_attempted(withdrawn))
                continue
            except Exception:
                # The database unreachable (or locked) for the re-check: the rest cannot be
                # checked, so it is not signed; the documents already signed still answer
                # (red team 23c R23C-5: a 500 for the whole batch hid their ids).
                log.exception("batch re-check failed")
                unavailable = errors.DatabaseUnavailable(
                    headers={"Retry-After": str(services.settings.retry_after_seconds)}
                )
                results.append(_not_attempted(unavailable))
                continue
        attempted += 1
        try:
            check_filename(filename)
            check_pdf_upload(pdf, signing_limit(services, pdf))
            check_signing_input(pdf)
            results.append(
                _sign_one(
                    services,
                    agency,
                    profile,
                    chosen,
                    key,
                    pdf,
                    filename,
                    codes[index] if codes is not None else NO_CODES,
                    actor,
                    field_name,
                    appearance=appearance,
                    key_kind=key_kind,
                    idempotency=keyed[index],
                    flow="batch",
                )
            )
        except errors.ServiceError as e:
            results.append(e)
            if e.status == 503:
                unavailable = e
        except IntegrityError:
            # The same batch resent while the first was still being signed: the other
            # request committed this document first (the key is unique per agency) and
            # _sign_one removed what this one wrote; it answers as the replay it is.
            entry = keyed[index]
            replayed = replay_signature(services, agency, *entry) if entry else None
            if replayed is None:
                log.exception("batch document failed unexpectedly")
                results.append(errors.ServiceError())
            else:
                results.append(replayed)
        except Exception:
            # _sign_one stores all or nothing: this document left nothing behind.
            log.exception("batch document failed unexpectedly")
            results.append(errors.ServiceError())
    try:
        with services.db.transaction() as session:
            audit.append(
                session,
                actor=actor,
                action="signature.batch",
                agency_code=agency.code,
                subject=profile.name,
                details={
                    "level": chosen.value,
                    "documents": len(items),
                    "signed": sum(1 for r in results if isinstance(r, SignResult)),
                },
            )
    except Exception:
        # Each signature has its own entry, committed with it; losing this summary must not
        # turn the answer into a 500 that hides the signed documents' ids.
        log.exception("could not write the batch summary audit entry")
    return results


def check_batch_idempotency_key(key: str | None) -> str | None:
    """``key`` when it is a valid ``Idempotency-Key`` for a batch: the single request's rule
    (:func:`check_idempotency_key`) and at most :data:`MAX_BATCH_IDEMPOTENCY_KEY` characters,
    leaving room for the ``#n`` each document is kept under; ``None`` for none; 422
    ``INVALID_IDEMPOTENCY_KEY`` otherwise."""
    check_idempotency_key(key)
    if key is not None and len(key) > MAX_BATCH_IDEMPOTENCY_KEY:
        raise errors.InvalidIdempotencyKey(
            f"Khóa Idempotency-Key của một lô ký dài tối đa {MAX_BATCH_IDEMPOTENCY_KEY} ký tự.",
            details={"max_length": MAX_BATCH_IDEMPOTENCY_KEY},
        )
    return key


# 128 (the column) minus "#" and the largest document number a batch can have (5 digits).
MAX_BATCH_IDEMPOTENCY_KEY = 122


def _batch_idempotency(
    key: str,
    items: Sequence[tuple[str | None, bytes]],
    *,
    profile: str,
    level: str | None,
    field_name: str | None,
    appearance: AppearanceRequest | None,
    codes: Sequence[DocumentCodes] | None,
) -> list[tuple[str, str] | None]:
    """Per document: (``{key}#{n}``, request digest). Each document's digest is that of its
    own request (:func:`request_digest`) bound to the digest of the whole batch, so that the
    same key with a batch that differs anywhere (a file, a code, the number of files, an
    option) conflicts for every document it shares a number with."""
    check_batch_idempotency_key(key)
    own = [
        request_digest(
            pdf,
            profile=profile,
            level=level,
            filename=filename,
            dossier_code=(codes[index].dossier_code if codes is not None else None),
            result_code=(codes[index].result_code if codes is not None else None),
            field_name=field_name,
            appearance=appearance,
            qr=None,
        )
        for index, (filename, pdf) in enumerate(items)
    ]
    whole = hashlib.sha256(":".join(own).encode()).hexdigest()
    return [
        (
            f"{key}#{index + 1}",
            hashlib.sha256(f"batch:{whole}:{digest}".encode()).hexdigest(),
        )
        for index, digest in enumerate(own)
    ]


def _batch_replays(
    services: Services, agency: Agency, key: str, keyed: list[tuple[str, str] | None]
) -> dict[int, SignResult]:
    """The documents of this batch that an earlier sending under ``key`` signed, by index.
    Every signature the agency stored under ``{key}#n`` is compared, not only those at this
    batch's places: one stored at a place this batch does not have, or for another document,
    means ``key`` belongs to another batch (409 ``IDEMPOTENCY_KEY_CONFLICT``), even when the
    first sending's documents at this batch's places all failed (red team 15, F1)."""
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    with services.db.transaction() as session:
        stored = session.execute(
            select(Signature.id, Signature.idempotency_key, Signature.request_sha256).where(
                Signature.agency_id == agency.id,
                Signature.idempotency_key.like(f"{escaped}#%", escape="\\"),
            )
        ).all()
    # LIKE ignores ASCII case on SQLite; keys are compared exactly, as for one document.
    stored = [row for row in stored if row[1].startswith(f"{key}#")]
    replays: dict[int, SignResult] = {}
    for signature_id, stored_key, digest in stored:
        place = stored_key[len(key) + 1 :]
        index = int(place) - 1 if place.isdigit() else -1
        entry = keyed[index] if 0 <= index < len(keyed) else None
        if entry is None or entry[0] != stored_key or entry[1] != digest:
            raise errors.IdempotencyConflict(
                IDEMPOTENCY_CONFLICT_MESSAGE, details={"signature_id": signature_id}
            )
    for index, entry in enumerate(keyed):
        if entry is not None and any(row[1] == entry[0] for row in stored):
            replayed = replay_signature(services, agency, *entry)
            if replayed is not None:
                replays[index] = replayed
    return replays


def _batch_still_allowed(
    services: Services,
    agency: Agency,
    client_id: int | None,
    profile_name: str,
    level: str | None,
    key: LoadedKey,
) -> None:
    """Between two documents of a batch: 401 ``UNAUTHENTICATED`` when the API key
    ``client_id`` was revoked or expired since the request began; the profile's errors
    (:func:`_profile_and_key`: withdrawn, its key disabled) when it no longer signs; 422
    ``PROFILE_KEY_MISSING`` when it now names another key than the batch began with. Two
    indexed reads; the opened key comes from the cache."""
    from signing_service.services.auth import is_usable
    from signing_service.store.models import ApiClient

    if client_id is not None:
        with services.db.transaction() as session:
            client = session.get(ApiClient, client_id)
            usable = client is not None and is_usable(client)
        if not usable:
            raise errors.Unauthenticated(
                "Khóa API đã bị thu hồi hoặc hết hạn trong khi lô đang được ký: các tài liệu "
                "còn lại không được ký."
            )
    try:
        _, _, now_key, _ = _profile_and_key(services, agency, profile_name, level)
    except errors.ProfileKeyMissing:
        # Said as what happened, like the revoked API key (new user 23 #13).
        raise errors.ProfileKeyMissing(
            "Khóa ký của cấu hình này đã bị vô hiệu hóa trong khi lô đang được ký: các tài liệu "
            "còn lại không được ký."
        ) from None
    if now_key.signing_cert.dump() != key.signing_cert.dump():
        raise errors.ProfileKeyMissing(
            "Cấu hình ký số đã được đổi sang khóa khác trong khi lô đang được ký: các tài liệu "
            "còn lại không được ký."
        )


def _not_attempted(cause: errors.ServiceError) -> errors.ServiceError:
    """The error of a batch document not attempted because a dependency was down."""
    skipped = type(cause)(cause.message, details={**cause.details, "attempted": False})
    skipped.code = cause.code
    return skipped
