"""Extension of signed PDFs (PAdES B-T → B-LT → B-LTA, archive timestamp renewal) and the
document versions it produces (issue 12, items 2 and 4).

A B-T signature proves when it was made, but a validator years later also needs the
certificates and revocation answers of that time (B-LT, ETSI EN 319 142-1 §6.3: the DSS), and
those stay verifiable only while a document timestamp protects them (B-LTA, §6.4). A document
timestamp in turn is only as durable as its TSA certificate and algorithms: before it ends, the
validation data of that timestamp is added and a new document timestamp over everything
(ETSI EN 319 102-1 §5.6.2.5, "archive timestamp renewal"; pyHanko's
``PdfTimeStamper.update_archival_timestamp_chain`` does the same in one call, here done in
steps so that every token passes the service's own checks).

Nothing invalid is extended: the document is verified first by the service's verifier, at the
present time, and refused unless every signature passes or is undecided only for missing
revocation data (``EXTENSION_SIGNATURE_INVALID``). The TSA is the operator's (a profile's TSA
by name, else the default); every token passes :class:`~signing_service.signing.tsa.
TokenChecker` as at signing.

Versions are written once: the object under a fresh key (governance-mode retention where the
store supports object lock), then the row, the registry link and the audit entry in one
transaction. The previous version stays, and stays downloadable. A crash between the two
steps leaves the previous version current and an unreferenced object that ``storage
reconcile`` removes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

import requests
from asn1crypto import cms, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.general import SigningError, extract_certificate_info
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
from pyhanko.sign.timestamps import TimestampRequestError
from pyhanko.sign.validation.dss import DocumentSecurityStore, collect_validation_info
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko_certvalidator.errors import (
    DisallowedAlgorithmError,
    ExpiredError,
    NotYetValidError,
    PathError,
    RevokedError,
    ValidationError,
)
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from signing_service import audit, errors
from signing_service._async import run_sync
from signing_service.services import allowlists
from signing_service.services.container import Services
from signing_service.services.documents import check_pdf_upload
from signing_service.services.registry_records import signature_digests
from signing_service.signing import pdfa
from signing_service.signing.engine import SIGNATURE_MARGIN, TIMESTAMP_MARGIN
from signing_service.signing.tsa import CheckedTimeStamper, TimestampCheckFailure, token_size
from signing_service.store.models import Agency, Document, RegisteredDocument, new_id
from signing_service.timefmt import api_time
from signing_service.verification.validate import (
    EncryptedPdfError,
    NotPdfError,
    UnreadablePdfError,
)
from storage import ObjectLocked, StorageUnavailableError

log = logging.getLogger(__name__)

# PAdES baseline levels in order (ETSI EN 319 142-1 §6): each adds to the one before.
LEVEL_ORDER = {"B-B": 0, "B-T": 1, "B-LT": 2, "B-LTA": 3}
TARGETS = ("B-LT", "B-LTA")
# A signature undecided only because its revocation status could not be had (a responder
# down): extending it is what fetches that status, so it is not refused.
EXTENDABLE_UNDECIDED = frozenset({"TRY_LATER", "REVOCATION_OUT_OF_BOUNDS_NO_POE"})
# Governance-mode retention of a version's object where the store supports object lock: the
# version cannot be overwritten or deleted by mistake; reconcile and purges bypass it.
VERSION_RETENTION = timedelta(days=3650)
MD_ALGORITHM = "sha256"


def parse_target(value: object) -> str:
    """``"B-LT"`` or ``"B-LTA"`` (spellings as :class:`SignatureLevel` accepts them: ``lta``,
    ``B_LTA``); 422 ``INVALID_EXTENSION_LEVEL`` for anything else (B-B, B-T, not a string)."""
    if isinstance(value, str) and len(value) <= 16:
        normalised = value.strip().upper().replace("_", "-")
        if not normalised.startswith("B-"):
            normalised = "B-" + normalised
        if normalised in TARGETS:
            return normalised
    shown = value[:16] if isinstance(value, str) else type(value).__name__
    raise errors.InvalidExtensionLevel(details={"level": shown, "allowed": list(TARGETS)})


@dataclass(frozen=True)
class Assessment:
    """What the verifier says of a document before extension: the lowest level of its
    signatures (``current``) and whether the target renews an archive timestamp."""

    current: str
    renew: bool


def _retry_after(services: Services) -> dict[str, str]:
    return {"Retry-After": str(services.settings.retry_after_seconds)}


async def _assess(services: Services, pdf: bytes, target: str, now: datetime | None) -> Assessment:
    """Verify ``pdf`` with the service's verifier and decide whether it can be extended to
    ``target``. Raises the upload errors, ``EXTENSION_NO_SIGNATURE``,
    ``EXTENSION_SIGNATURE_INVALID``, ``EXTENSION_NOT_TIMESTAMPED``, ``EXTENSION_TARGET_LOWER``."""
    try:
        report = await services.verifier.async_verify(pdf, validation_time=now)
    except NotPdfError:
        raise errors.NotAPdf() from None
    except UnreadablePdfError:
        raise errors.MalformedPdf() from None
    except EncryptedPdfError:
        raise errors.EncryptedPdf() from None
    signatures = [s for s in report.signatures if s.type != "document_timestamp"]
    verdict = report.verdict.value
    if not signatures and verdict != "TOTAL_FAILED":
        raise errors.ExtensionNoSignature()
    refused = verdict == "TOTAL_FAILED" or any(
        s.indication.value == "TOTAL_FAILED"
        or (s.indication.value == "INDETERMINATE" and s.sub_indication not in EXTENDABLE_UNDECIDED)
        for s in report.signatures
    )
    if refused:
        first = next((s for s in report.signatures if s.indication.value != "TOTAL_PASSED"), None)
        raise errors.ExtensionSignatureInvalid(
            details={
                "verdict": verdict,
                "sub_indication": report.sub_indication,
                "field": first.field if first is not None else None,
                "reason": first.summary if first is not None else report.message,
            }
        )
    # An adbe.pkcs7.* signature's levels (PKCS7-T, …) and an extended-profile one's (E-T, …)
    # take the same steps as PAdES baseline's.
    levels = ["B-" + (s.level or "B-B").split("-", 1)[1] if s.level else "B-B" for s in signatures]
    current = min(levels, key=lambda lv: LEVEL_ORDER.get(lv, 0))
    if current == "B-B":
        raise errors.ExtensionNotTimestamped(details={"current": current, "target": target})
    renew = current == "B-LTA" and target == "B-LTA"
    if not renew and LEVEL_ORDER[target] <= LEVEL_ORDER[current]:
        raise errors.ExtensionTargetLower(details={"current": current, "target": target})
    return Assessment(current, renew)


def check_renewal_due(services: Services, pdf: bytes, now: datetime | None) -> None:
    """For a renewal through the API (B-LTA → B-LTA): refuse 409 ``EXTENSION_NOT_DUE`` unless
    the newest document timestamp of ``pdf`` is due as the preservation job judges it (its TSA
    certificate ends within ``SIGNING_SERVICE_PRESERVATION_HORIZON_DAYS`` of ``now``, or its
    digest is in ``SIGNING_SERVICE_PRESERVATION_RETIRING_DIGESTS``; a timestamp that cannot
    be read counts as due). Red team 12 F14: otherwise a client key renews without limit, a
    whole new version under a ten-year lock and a TSA request each time."""
    from signing_service.services.preservation import archive_facts

    facts = archive_facts(pdf)
    if facts is None or facts.tsa_not_after is None:
        return
    moment = now.astimezone(UTC) if now is not None else datetime.now(UTC)
    settings = services.settings
    horizon_end = moment + timedelta(days=settings.preservation_horizon_days)
    if facts.tsa_not_after < horizon_end:
        return
    if facts.digest_algorithm in settings.preservation_retiring_digests:
        return
    raise errors.ExtensionNotDue(
        details={
            "tsa_not_after": api_time(facts.tsa_not_after),
            "due_from": api_time(
                facts.tsa_not_after - timedelta(days=settings.preservation_horizon_days)
            ),
            "digest_algorithm": facts.digest_algorithm,
        }
    )


def check_renewed_digest(services: Services, renewed: bytes) -> None:
    """Refuse 409 ``PRESERVATION_DIGEST_RETIRING`` when the newest document timestamp of the
    renewed ``renewed`` bytes uses a digest the operator is retiring: the new version would be
    due at once, and renewed again by every run (red team 12 F9). Before anything is stored."""
    from signing_service.services.preservation import archive_facts

    facts = archive_facts(renewed)
    retiring = services.settings.preservation_retiring_digests
    if facts is not None and facts.digest_algorithm in retiring:
        raise errors.PreservationDigestRetiring(
            details={"digest_algorithm": facts.digest_algorithm}
        )


def _certificates(signed_data: cms.SignedData) -> list[x509.Certificate]:
    return [c.chosen for c in signed_data["certificates"] or () if c.name == "certificate"]


async def _add_validation_data(
    services: Services,
    writer: IncrementalPdfFileWriter,
    embedded: list[EmbeddedPdfSignature],
    now: datetime | None,
) -> None:
    """Add to ``writer``'s DSS the certificates and revocation data (fetched now) of each of
    ``embedded`` and of its signature timestamps, each with its VRI entry (ISO 32000-2
    §12.8.4.3). Revocation is fetched in hard-fail mode: an answer that cannot be had raises
    503 ``EXTENSION_VALIDATION_DATA_UNAVAILABLE`` instead of a "B-LT" without its data."""
    for emb in embedded:
        context = services.trust.validation_context(
            other_certs=_certificates(emb.signed_data),
            moment=now,
            revocation_mode="hard-fail",
        )
        try:
            paths = await collect_validation_info(emb, context)
        except (PathError, ValidationError) as e:
            raise _validation_data_error(services, emb, e) from None
        DocumentSecurityStore.supply_dss_in_writer(
            writer, emb.pkcs7_content, paths=paths, validation_context=context
        )


def _validation_data_error(
    services: Services, emb: EmbeddedPdfSignature, error: Exception
) -> errors.ServiceError:
    """The answer when a certificate's path or status cannot be established now: 503 when
    the status could not be had (a responder or CRL down: retry); 422 when retrying cannot
    help: the certificate has ended (``EXTENSION_CERTIFICATE_EXPIRED``: its status is no
    longer published), or it is revoked, not yet valid, or its algorithms are refused
    (``EXTENSION_SIGNATURE_INVALID``; e.g. an archive timestamp's TSA revoked since)."""
    log.info("validation data unavailable: %s: %s", type(error).__name__, error)
    details = {"field": str(emb.field_name), "reason": type(error).__name__}
    if isinstance(error, ExpiredError):
        return errors.ExtensionCertificateExpired(details=details)
    if isinstance(error, RevokedError | NotYetValidError | DisallowedAlgorithmError):
        return errors.ExtensionSignatureInvalid(details=details)
    return errors.ExtensionValidationDataUnavailable(
        details=details, headers=_retry_after(services)
    )


def _timestamper(services: Services, tsa: str | None) -> CheckedTimeStamper:
    url = allowlists.tsa_url(services, tsa)
    return CheckedTimeStamper(services.timestamper(url), services.token_checker)


async def _extend(
    services: Services,
    pdf: bytes,
    target: str,
    assessment: Assessment,
    tsa: str | None,
    now: datetime | None,
) -> bytes:
    out = BytesIO(pdf)
    writer = IncrementalPdfFileWriter(out, strict=False)
    reader = writer.prev
    if assessment.renew:
        # ETSI EN 319 102-1 §5.6.2.5: the newest archive timestamp's validation data, then a
        # new timestamp over it. The signers' data is already protected by that timestamp
        # (and their certificates may have expired since: nothing to fetch for them).
        stamps = sorted(reader.embedded_timestamp_signatures, key=lambda e: e.signed_revision)
        chosen = stamps[-1:]
    else:
        chosen = list(reader.embedded_regular_signatures)
    await _add_validation_data(services, writer, chosen, now)
    if target != "B-LTA":
        writer.write_in_place()
        return out.getvalue()
    timestamper = _timestamper(services, tsa)
    size = await token_size(timestamper, MD_ALGORITHM)
    await PdfTimeStamper(
        timestamper, field_name=pdfa.invisible_field_for_pdfa1(writer)
    ).async_timestamp_pdf(
        writer,
        MD_ALGORITHM,
        bytes_reserved=2 * (size + TIMESTAMP_MARGIN + SIGNATURE_MARGIN),
        in_place=True,
    )
    # The new document timestamp's own validation data, in one more update: without it a
    # validator working offline cannot cover that timestamp (EU DSS "uncovered POE"), and the
    # next renewal would have nothing to build on.
    writer = IncrementalPdfFileWriter(out, strict=False)
    newest = max(writer.prev.embedded_timestamp_signatures, key=lambda e: e.signed_revision)
    await _add_validation_data(services, writer, [newest], now)
    writer.write_in_place()
    return out.getvalue()


async def async_extend_pdf(
    services: Services,
    pdf: bytes,
    target: str,
    *,
    now: datetime | None = None,
    tsa: str | None = None,
) -> bytes:
    """:func:`extend_pdf` for callers already in an event loop."""
    target = parse_target(target)
    check_pdf_upload(pdf, services.settings.max_document_bytes)
    assessment = await _assess(services, pdf, target, now)
    return await _extend_checked(services, pdf, target, assessment, tsa, now)


def extend_pdf(
    services: Services,
    pdf: bytes,
    target: str,
    *,
    now: datetime | None = None,
    tsa: str | None = None,
) -> bytes:
    """``pdf`` extended to ``target`` (``"B-LT"`` | ``"B-LTA"``, ETSI EN 319 142-1), as new
    incremental updates after its bytes (they stay a prefix of the result).

    - B-T → B-LT: the DSS with the certificates and revocation data, fetched now, of every
      signature and its signature timestamp;
    - B-T/B-LT → B-LTA: the same, then a document timestamp, then that timestamp's own
      validation data;
    - B-LTA → B-LTA (renewal): the newest document timestamp's validation data, a new
      document timestamp, and its validation data.

    Verified first with the service's verifier (:func:`_assess`). ``now``: validate as of
    that moment (default: the present; the revocation data is always fetched at call time).
    ``tsa``: the name of an operator-configured TSA (a profile's ``tsa``), ``None`` for the
    default; a tenant never names a URL.

    Errors (:class:`errors.ServiceError`): 422 ``INVALID_EXTENSION_LEVEL``,
    ``EMPTY_FILE`` / ``NOT_A_PDF`` / ``MALFORMED_PDF`` / ``ENCRYPTED_PDF``, 413
    ``FILE_TOO_LARGE``, 422 ``EXTENSION_NO_SIGNATURE``, ``EXTENSION_SIGNATURE_INVALID``,
    ``EXTENSION_NOT_TIMESTAMPED`` (a B-B signature), ``EXTENSION_TARGET_LOWER``; 503
    ``EXTENSION_VALIDATION_DATA_UNAVAILABLE`` and ``TIMESTAMP_UNAVAILABLE`` (Retry-After);
    502/503 ``TIMESTAMP_*`` for a token the checks refuse; 422 ``SIGNING_FAILED``.
    """
    return run_sync(async_extend_pdf(services, pdf, target, now=now, tsa=tsa))


def _tsa_certificate(signed_data: cms.SignedData) -> x509.Certificate | None:
    try:
        return extract_certificate_info(signed_data).signer_cert
    except Exception:  # noqa: BLE001 - a token without its certificate tells no expiry
        return None


def newest_timestamp_expiry(pdf: bytes) -> datetime | None:
    """``not_after`` (aware, UTC) of the TSA certificate of the newest document timestamp in
    ``pdf``; without one, of the newest signature timestamp of its newest signature; ``None``
    when there is no timestamp or the file cannot be read. The moment after which the
    document's proof of existence rests on a certificate that has ended: preservation renews
    before it (ETSI EN 319 102-1 §5.6.2.5)."""
    try:
        reader = PdfFileReader(BytesIO(pdf), strict=False)
        stamps = reader.embedded_timestamp_signatures
        if stamps:
            newest = max(stamps, key=lambda e: e.signed_revision)
            cert = _tsa_certificate(newest.signed_data)
        else:
            signatures = reader.embedded_regular_signatures
            if not signatures:
                return None
            newest = max(signatures, key=lambda e: e.signed_revision)
            tokens = list(extract_tst_data_iter(newest.signer_info, signed=False))
            cert = _tsa_certificate(tokens[-1]) if tokens else None
    except Exception:
        log.info("no timestamp expiry readable", exc_info=True)
        return None
    if cert is None:
        return None
    not_after = cert["tbs_certificate"]["validity"]["not_after"].native
    return not_after.astimezone(UTC) if isinstance(not_after, datetime) else None


def latest_version(session: Any, document: Document) -> Document:
    """The newest version of ``document``'s line (itself when none is newer), following
    ``previous_version_id`` forward (unique: one successor at most)."""
    current = document
    for _ in range(10_000):
        newer = session.scalars(
            select(Document).where(Document.previous_version_id == current.id)
        ).first()
        if newer is None:
            return current
        current = newer
    raise AssertionError("version chain too long")


def store_version(
    services: Services,
    agency: Agency,
    previous: Document,
    data: bytes,
    *,
    reason: str,
    level: str | None = None,
    actor: str = "system",
) -> Document:
    """Store ``data`` as the next version of ``previous`` (a document of ``agency``) and
    return the new :class:`Document` row.

    Written once: the object first, under a key never used before (``{agency}/{yyyy}/{mm}/
    {new id}.pdf``; governance-mode retention for :data:`VERSION_RETENTION` where the store
    supports object lock), then in one transaction the row (``previous_version_id``,
    ``version`` + 1, ``level``, ``archive_tsa_not_after`` from
    :func:`newest_timestamp_expiry`), the registry record moved to the new version (the same
    public id: its QR codes and links keep working; earlier versions are still recognised,
    services/registry.py) and the audit entry ``document.version_created`` (``reason``:
    ``extension`` / ``preservation`` / …). If the transaction fails the object is deleted; a
    crash leaves it for ``storage reconcile``; the previous version stays current either way.

    Raises 409 ``DOCUMENT_NOT_LATEST_VERSION`` when ``previous`` already has a newer version
    (also when a concurrent call committed one first: the unique ``previous_version_id``
    decides), 503 ``STORAGE_UNAVAILABLE``.
    """
    now = datetime.now(UTC)
    doc_id = new_id()
    sha256 = hashlib.sha256(data).hexdigest()
    key = f"{agency.code}/{now:%Y/%m}/{doc_id}.pdf"
    expiry = newest_timestamp_expiry(data)
    try:
        services.store.put(key, data, sha256=sha256, retain_until=now + VERSION_RETENTION)
    except StorageUnavailableError:
        raise errors.StorageUnavailable() from None
    try:
        with services.db.transaction() as session:
            newer = session.scalars(
                select(Document.id).where(Document.previous_version_id == previous.id)
            ).first()
            if newer is not None:
                raise errors.DocumentNotLatestVersion(
                    details={"latest_document_id": latest_version(session, previous).id}
                )
            document = Document(
                id=doc_id,
                agency_id=agency.id,
                kind=previous.kind,
                sha256=sha256,
                size=len(data),
                media_type=previous.media_type,
                storage_key=key,
                filename=previous.filename,
                dossier_code=previous.dossier_code,
                result_code=previous.result_code,
                created_at=now,
                previous_version_id=previous.id,
                version=(previous.version or 1) + 1,
                level=level,
                archive_tsa_not_after=expiry,
            )
            session.add(document)
            session.flush()
            record = session.scalars(
                select(RegisteredDocument).where(RegisteredDocument.document_id == previous.id)
            ).first()
            if record is not None:
                record.document_id = document.id
                record.sha256 = sha256
                # The new version's last signature (the document timestamp just added).
                last = signature_digests(data, 1)
                record.signature_sha256 = last[0][0] if last and last[0][1] == len(data) else None
            audit.append(
                session,
                actor=actor,
                action="document.version_created",
                agency_code=agency.code,
                subject=document.id,
                details={
                    "previous_document": previous.id,
                    "version": document.version,
                    "level": level,
                    "reason": reason,
                    "sha256": sha256,
                    "previous_sha256": previous.sha256,
                    "public_id": record.public_id if record is not None else None,
                    "archive_tsa_not_after": expiry.isoformat() if expiry else None,
                },
            )
            session.expunge(document)
    except BaseException as e:
        _remove(services, key)
        if isinstance(e, IntegrityError):
            # A concurrent version of the same previous committed first.
            raise errors.DocumentNotLatestVersion() from None
        if isinstance(e, StorageUnavailableError):
            raise errors.StorageUnavailable() from None
        raise
    return document


def _remove(services: Services, key: str) -> None:
    try:
        services.store.delete(key, bypass_retention=True)
    except (ObjectLocked, StorageUnavailableError, OSError):
        log.error("could not remove orphan object %s; storage reconcile will", key)


# Bound on the versions listed and followed backwards (a renewal every few years).
MAX_VERSIONS = 1000


def version_line(services: Services, agency_id: int, document_id: str) -> list[Document]:
    """Every version of the line ``document_id`` belongs to (the agency's; 404
    ``DOCUMENT_NOT_FOUND`` otherwise, the same for another agency's), oldest first."""
    with services.db.transaction() as session:
        doc = session.scalars(
            select(Document).where(Document.id == document_id, Document.agency_id == agency_id)
        ).first()
        if doc is None:
            raise errors.DocumentNotFound()
        first = doc
        for _ in range(MAX_VERSIONS):
            if first.previous_version_id is None:
                break
            older = session.get(Document, first.previous_version_id)
            if older is None:
                break
            first = older
        line = [first]
        for _ in range(MAX_VERSIONS):
            newer = session.scalars(
                select(Document).where(Document.previous_version_id == line[-1].id)
            ).first()
            if newer is None:
                break
            line.append(newer)
        for row in line:
            session.expunge(row)
    return line


def _signing_profile_tsa(services: Services, first: Document) -> str | None:
    """The TSA name of the profile that signed the line's first version (``None``: the
    default TSA; also when the profile names a TSA no longer configured)."""
    from signing_service.store.models import Signature

    with services.db.transaction() as session:
        signature = session.scalars(
            select(Signature).where(Signature.output_document_id == first.id)
        ).first()
        name = signature.profile.tsa if signature is not None else None
    if name is not None and name not in allowlists.tsas(services):
        return None
    return name


def _signature_level(services: Services, document: Document) -> str | None:
    from signing_service.store.models import Signature

    with services.db.transaction() as session:
        return session.scalars(
            select(Signature.level).where(Signature.output_document_id == document.id)
        ).first()


def level_of(services: Services, document: Document) -> str | None:
    """The PAdES level of a stored version: its own (extension) or its signature's."""
    return document.level or _signature_level(services, document)


@dataclass(frozen=True)
class ExtensionResult:
    """A stored extension: the new version, the one it extends, the level reached and the
    lowest level before, whether it renewed an archive timestamp, the registry's public id."""

    document: Document
    previous: Document
    level: str
    level_before: str
    renewed: bool
    public_id: str | None


def extend_stored(
    services: Services,
    agency: Agency,
    document_id: str,
    target: str,
    *,
    actor: str,
    now: datetime | None = None,
) -> ExtensionResult:
    """Extend the agency's stored signed document ``document_id`` (its newest version) to
    ``target`` and store the result as its next version (:func:`extend_pdf`,
    :func:`store_version`). 404 ``DOCUMENT_NOT_FOUND`` (unknown or another agency's), 409
    ``DOCUMENT_NOT_LATEST_VERSION`` (``details.latest_document_id``), and the errors of
    :func:`extend_pdf`."""
    from signing_service.services.documents import read_content

    target = parse_target(target)
    line = version_line(services, agency.id, document_id)
    current = next(d for d in line if d.id == document_id)
    if line[-1].id != current.id:
        raise errors.DocumentNotLatestVersion(details={"latest_document_id": line[-1].id})
    data = read_content(services, current)
    tsa = _signing_profile_tsa(services, line[0])
    assessment = run_sync(_assess(services, data, target, now))
    if assessment.renew:
        check_renewal_due(services, data, now)
    extended = extend_pdf_assessed(services, data, target, assessment, tsa=tsa, now=now)
    if assessment.renew:
        check_renewed_digest(services, extended)
    stored = store_version(
        services,
        agency,
        current,
        extended,
        reason="renewal" if assessment.renew else "extension",
        level=target,
        actor=actor,
    )
    with services.db.transaction() as session:
        public_id = session.scalars(
            select(RegisteredDocument.public_id).where(RegisteredDocument.document_id == stored.id)
        ).first()
    return ExtensionResult(stored, current, target, assessment.current, assessment.renew, public_id)


@dataclass(frozen=True)
class UploadExtension:
    """An uploaded signed PDF, extended (not stored): its bytes and the levels."""

    pdf: bytes
    level: str
    level_before: str
    renewed: bool


def extend_upload(
    services: Services,
    agency: Agency,
    pdf: bytes,
    target: str,
    *,
    actor: str,
    filename: str | None = None,
    now: datetime | None = None,
) -> UploadExtension:
    """Extend a signed PDF an agency uploads (``POST /v1/extensions``, as EU DSS offers) to
    ``target`` with the operator's default TSA, and return it; nothing is stored but the
    audit entry ``extension.upload`` (the hashes before and after, the levels). Errors of
    :func:`extend_pdf`."""
    target = parse_target(target)
    check_pdf_upload(pdf, services.settings.max_document_bytes)
    assessment = run_sync(_assess(services, pdf, target, now))
    if assessment.renew:
        check_renewal_due(services, pdf, now)
    extended = extend_pdf_assessed(services, pdf, target, assessment, tsa=None, now=now)
    if assessment.renew:
        check_renewed_digest(services, extended)
    with services.db.transaction() as session:
        audit.append(
            session,
            actor=actor,
            action="extension.upload",
            agency_code=agency.code,
            subject=hashlib.sha256(extended).hexdigest(),
            details={
                "input_sha256": hashlib.sha256(pdf).hexdigest(),
                "level": target,
                "previous_level": assessment.current,
                "renewed": assessment.renew,
                "filename": filename,
            },
        )
    return UploadExtension(extended, target, assessment.current, assessment.renew)


def extend_pdf_assessed(
    services: Services,
    pdf: bytes,
    target: str,
    assessment: Assessment,
    *,
    tsa: str | None,
    now: datetime | None,
) -> bytes:
    """:func:`extend_pdf` after :func:`_assess` already ran (one verification, not two)."""
    return run_sync(_extend_checked(services, pdf, target, assessment, tsa, now))


async def _extend_checked(
    services: Services,
    pdf: bytes,
    target: str,
    assessment: Assessment,
    tsa: str | None,
    now: datetime | None,
) -> bytes:
    from signing_service.services.signing import timestamp_error, timestamp_unavailable

    try:
        extended = await _extend(services, pdf, target, assessment, tsa, now)
    except errors.ServiceError:
        raise
    except TimestampCheckFailure as failure:
        raise timestamp_error(services, failure) from None
    except (TimestampRequestError, requests.RequestException):
        raise timestamp_unavailable(services) from None
    except SigningError as e:
        log.warning("extension failed: %s", e)
        raise errors.SigningFailed("Không nâng cấp được chữ ký của tài liệu này.") from None
    limit = services.settings.max_document_bytes
    if len(extended) > limit:
        raise errors.PayloadTooLarge(
            "Tài liệu sau khi nâng cấp sẽ vượt quá dung lượng tối đa mà dịch vụ có thể kiểm "
            "tra lại; không lưu kết quả.",
            details={"max_bytes": limit, "extended_bytes": len(extended)},
        )
    return extended


def backfill_archive_expiry(services: Services, *, limit: int = 1000) -> int:
    """Record ``archive_tsa_not_after`` (:func:`newest_timestamp_expiry`) on the newest
    versions of B-LTA documents that lack it: those signed before migration 0013 (signing
    records it since). Reads at most ``limit`` documents' content; returns how many were
    updated. Idempotent: a document with the column set is not read again; one whose
    timestamp cannot be read stays ``NULL``. Raises ``STORAGE_*`` errors of
    :func:`~signing_service.services.documents.read_content`."""
    from sqlalchemy import exists, or_, update
    from sqlalchemy.orm import aliased

    from signing_service.services.documents import read_content
    from signing_service.store.models import Signature

    newer = aliased(Document)
    with services.db.transaction() as session:
        rows = session.scalars(
            select(Document)
            .where(
                Document.archive_tsa_not_after.is_(None),
                Document.kind == "signed",
                or_(
                    Document.level == "B-LTA",
                    exists().where(
                        Signature.output_document_id == Document.id, Signature.level == "B-LTA"
                    ),
                ),
                ~exists().where(newer.previous_version_id == Document.id),
            )
            .order_by(Document.created_at)
            .limit(limit)
        ).all()
        for row in rows:
            session.expunge(row)
    updated = 0
    for row in rows:
        expiry = newest_timestamp_expiry(read_content(services, row))
        if expiry is None:
            continue
        with services.db.transaction() as session:
            session.execute(
                update(Document)
                .where(Document.id == row.id, Document.archive_tsa_not_after.is_(None))
                .values(archive_tsa_not_after=expiry)
                .execution_options(synchronize_session=False)
            )
        updated += 1
    return updated
