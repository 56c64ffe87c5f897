"""The registry of issued documents (sổ đăng ký văn bản đã phát hành, issue 11).

Every signed document the service stores is registered in the same transaction
(:func:`register_signed`): the SHA-256 of its final bytes, the agency, the dossier and result
codes, the document number, the appearance kind and the signing time, under a ``public_id``
chosen *before* signing, so that the QR code drawn into the document links to the document's
own record (``{public base}/xac-minh/{public_id}``).

A verification looks the uploaded file's hash up (:func:`registry_section`) and answers the
citizen's question a valid signature does not: is this the document the agency issued, and is
it still in force? Agencies mark a registered document revoked or superseded
(:func:`revoke`, :func:`supersede`); each change is audited in its own transaction and is
final (``in_force`` → ``revoked`` | ``superseded``).

Privacy: a lookup needs the file's hash or the unguessable ``public_id`` (128 random bits);
:meth:`RegistryRecord.to_public_dict` carries only public metadata (agency, codes, dates,
status), never the content, the file name or the applicant's identity.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from signing_service import audit, errors
from signing_service.services.container import Services
from signing_service.services.documents import is_clean_text
from signing_service.services.registry_records import (  # noqa: F401 - re-exported
    _BYTE_RANGE,
    IN_FORCE,
    LINK_PATH,
    MAX_REASON_CHARS,
    MAX_REVISIONS_LOOKED_UP,
    MAX_VERSION_CHAIN,
    MAX_VERSION_WALK,
    NOT_FOUND,
    PUBLIC_ID,
    REVOKED,
    SHA256_HEX,
    STATUS_LABELS,
    STATUSES,
    SUPERSEDED,
    VALIDATION_DATA,
    LinkedRecord,
    RegistryRecord,
    _seconds,
    new_public_id,
    only_timestamps_after,
    public_link,
    registry_sentence,
    signature_digests,
    signed_revision_digests,
    signed_revisions,
)
from signing_service.store.models import Agency, Document, RegisteredDocument


def _linked(session: Session, base: str | None, row_id: int | None) -> LinkedRecord | None:
    if row_id is None:
        return None
    row = session.get(RegisteredDocument, row_id)
    if row is None:
        return None
    return LinkedRecord(
        row.public_id, public_link(base, row.public_id), row.document_id, row.status
    )


def _newer_version(session: Session, row_id: int) -> int | None:
    """The id of the newest record signed further from record ``row_id`` (same agency: see
    :func:`register_signed`), or ``None``."""
    return session.scalars(
        select(RegisteredDocument.id)
        .where(RegisteredDocument.previous_id == row_id)
        .order_by(RegisteredDocument.id.desc())
        .limit(1)
    ).first()


def _version_path(session: Session, row: RegisteredDocument) -> list[int]:
    """The ids of the records :func:`_latest_version` reads for ``row``, ``row``'s first."""
    path = [row.id]
    current = row
    for _ in range(MAX_VERSION_CHAIN):
        if current.status != IN_FORCE:
            break
        newer_id = _newer_version(session, current.id)
        if newer_id is None or newer_id in path:
            break
        newer = session.get(RegisteredDocument, newer_id)
        if newer is None:
            break
        path.append(newer_id)
        current = newer
    return path


def _lock(session: Session, ids: set[int]) -> set[int]:
    """Lock the registry rows ``ids`` (``SELECT … FOR UPDATE``, in id order: two
    transactions locking overlapping sets never wait for each other in a cycle) and read
    them again as they are now; returns ``ids``. SQLite has no row locks (and needs none:
    its writers are serialised)."""
    session.scalars(
        select(RegisteredDocument)
        .where(RegisteredDocument.id.in_(sorted(ids)))
        .order_by(RegisteredDocument.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    return set(ids)


def _ancestors(session: Session, row_id: int) -> set[int]:
    """``row_id`` and every record it was signed further from (``previous_id``, followed to
    the first version: each record's previous one is older, so the walk ends)."""
    chain = (
        select(RegisteredDocument.id, RegisteredDocument.previous_id)
        .where(RegisteredDocument.id == row_id)
        .cte("chain", recursive=True)
    )
    chain = chain.union_all(
        select(RegisteredDocument.id, RegisteredDocument.previous_id).join(
            chain, RegisteredDocument.id == chain.c.previous_id
        )
    )
    return set(session.scalars(select(chain.c.id)))


def _same_version_chain(session: Session, one: int, other: int) -> bool:
    """One of the two records was signed further (at any distance) from the other."""
    return other in _ancestors(session, one) or one in _ancestors(session, other)


def _latest_version(session: Session, row: RegisteredDocument) -> RegisteredDocument:
    """The record whose status answers for ``row`` (an in-force record): the latest version
    the service signed further from it, following ``previous_id`` forward (the newest at each
    step), at most :data:`MAX_VERSION_CHAIN` steps; ``row`` itself when none. Only an in-force
    version's successor is followed: a revoked or superseded one answers for what precedes
    (the walk is :func:`_version_path`'s)."""
    last = _version_path(session, row)[-1]
    if last == row.id:
        return row
    found = session.get(RegisteredDocument, last)
    assert found is not None  # read by the walk in this session
    return found


def _record(
    session: Session,
    services: Services,
    row: RegisteredDocument,
    matched: Document | None = None,
) -> RegistryRecord:
    """``row`` as read; ``matched``: an earlier version of its document that a lookup found
    (the record stands for its newest version, which ``row`` names)."""
    base = services.settings.public_base_url
    newest = session.get(Document, row.document_id)
    newest_version = newest.version if newest is not None and newest.version else 1
    agency = session.get(Agency, row.agency_id)
    assert agency is not None
    # The newest version the service signed from this one (officer, then seal).
    further = _newer_version(session, row.id)
    # F5: a version signed further stands for this one; its revocation or supersession is
    # this one's too (derived at lookup: nothing to cascade, nothing to keep in step).
    governing = row
    if row.status == IN_FORCE:
        latest = _latest_version(session, row)
        if latest.status != IN_FORCE:
            governing = latest
    return RegistryRecord(
        public_id=row.public_id,
        link=public_link(base, row.public_id),
        agency_code=agency.code,
        agency_name=agency.name,
        kind=row.kind,
        dossier_code=row.dossier_code,
        result_code=row.result_code,
        document_number=row.document_number,
        issued_at=row.signed_at,
        status=governing.status,
        status_changed_at=governing.status_changed_at,
        reason=governing.reason,
        superseded_by=_linked(session, base, governing.superseded_by_id),
        signed_further_by=_linked(session, base, further),
        status_from=(
            LinkedRecord(
                governing.public_id,
                public_link(base, governing.public_id),
                governing.document_id,
                governing.status,
            )
            if governing.id != row.id
            else None
        ),
        document_id=row.document_id,
        agency_id=row.agency_id,
        sha256=row.sha256,
        registered_at=row.registered_at,
        signs_further=_linked(session, base, row.previous_id),
        version=(matched.version or 1) if matched is not None else newest_version,
        newer_version=matched is not None and matched.id != row.document_id,
    )


def _by_sha256(session: Session, sha256_hex: str) -> RegisteredDocument | None:
    # The same final bytes twice are practically impossible (a signing time, a random
    # signature); should it happen, the newest registration answers.
    return session.scalars(
        select(RegisteredDocument)
        .where(RegisteredDocument.sha256 == sha256_hex)
        .order_by(RegisteredDocument.id.desc())
        .limit(1)
    ).first()


def _by_earlier_versions(
    session: Session, digests: list[str]
) -> list[tuple[Document, RegisteredDocument]]:
    """Earlier versions (each with a newer one) among the documents whose bytes have one of
    ``digests``, with the registry record of their newest version: the record moved to the
    newest version (services/extension.py :func:`store_version`), and an earlier version
    is still recognised through it. At most one pair per digest (the newest document)."""
    from sqlalchemy.orm import aliased

    newer = aliased(Document)
    documents = session.scalars(
        select(Document)
        .join(newer, newer.previous_version_id == Document.id)
        .where(Document.sha256.in_(digests))
        .order_by(Document.created_at.desc())
    ).all()
    out: list[tuple[Document, RegisteredDocument]] = []
    seen: set[str] = set()
    for document in documents:
        if document.sha256 in seen:
            continue
        current = document
        for _ in range(MAX_VERSION_WALK):
            following = session.scalars(
                select(Document).where(Document.previous_version_id == current.id)
            ).first()
            if following is None:
                break
            current = following
        row = session.scalars(
            select(RegisteredDocument).where(RegisteredDocument.document_id == current.id)
        ).first()
        if row is not None:
            seen.add(document.sha256)
            out.append((document, row))
    return out


def lookup_sha256(services: Services, sha256_hex: str) -> RegistryRecord | None:
    """The registered document whose final bytes have this SHA-256 (64 hex digits, either
    case), or ``None`` (not issued through this service, or not a SHA-256: never raises on
    input). The bytes of an earlier version of a registered document (before an extension
    or a renewal) find the record of its newest version, with ``version`` and
    ``newer_version`` saying so."""
    digest = sha256_hex.strip().lower() if isinstance(sha256_hex, str) else ""
    if SHA256_HEX.fullmatch(digest) is None:
        return None
    with services.db.transaction() as session:
        row = _by_sha256(session, digest)
        if row is not None:
            return _record(session, services, row)
        earlier = _by_earlier_versions(session, [digest])
        if earlier:
            document, row = earlier[0]
            return _record(session, services, row, matched=document)
        return None


def lookup_public_id(services: Services, public_id: str) -> RegistryRecord | None:
    """The registered document with this public id, or ``None`` (unknown or malformed: a
    malformed id never reaches the database and never raises)."""
    if not isinstance(public_id, str) or PUBLIC_ID.fullmatch(public_id) is None:
        return None
    with services.db.transaction() as session:
        row = session.scalars(
            select(RegisteredDocument).where(RegisteredDocument.public_id == public_id)
        ).first()
        return _record(session, services, row) if row is not None else None


def registry_section(
    services: Services, pdf: bytes, sha256_hex: str | None = None
) -> dict[str, Any]:
    """The ``registry`` section of a verification report for ``pdf`` (``sha256_hex``: its
    SHA-256 when already known).

    The whole file registered: :meth:`RegistryRecord.to_public_dict` with ``"matched":
    "file"``. Else, when a signed revision of it (the bytes a signature covers, up to its
    revision's end) is a registered document: the same with ``"matched": "revision"`` (content
    was appended after the document was issued: the issued document is inside, what was added
    is not the agency's), or ``"matched": "validation_data"`` when every signature after that
    revision is a document timestamp (:func:`only_timestamps_after`: long-term validation data
    added, e.g. by ``POST /v1/extensions``; the conclusion turns it back into ``"revision"``
    when the verifier saw other changes). Else ``{"found": false}``: not issued through this
    service, which is not an error.
    """
    digest = sha256_hex or hashlib.sha256(pdf).hexdigest()
    found = lookup_sha256(services, digest)
    signed = signed_revisions(pdf)
    if found is not None:
        section = {**found.to_public_dict(), "matched": "file"}
        inner = _withdrawn_inside(services, [d for d, _ in signed if d != digest], found.public_id)
        if inner is not None:
            section["contains"] = inner
        return section
    revisions = [digest for digest, _ in signed]
    # The values of the last-ending signatures: a registered document whose unsigned /Contents
    # bytes were changed is still the registered one.
    last_signatures = signature_digests(pdf)
    if not revisions and not last_signatures:
        return dict(NOT_FOUND)
    with services.db.transaction() as session:
        # (end of what matched, row id, row, earlier version matched): the furthest wins.
        candidates: list[tuple[int, int, RegisteredDocument, Document | None]] = []
        if revisions:
            ends = dict(signed)
            rows = session.scalars(
                select(RegisteredDocument).where(RegisteredDocument.sha256.in_(revisions))
            ).all()
            candidates += [(ends[r.sha256], r.id, r, None) for r in rows]
            # An earlier version's bytes inside the file (content appended to a version the
            # service has since extended).
            candidates += [
                (ends[d.sha256], r.id, r, d) for d, r in _by_earlier_versions(session, revisions)
            ]
        by_value = dict(last_signatures)
        if by_value:
            rows = session.scalars(
                select(RegisteredDocument).where(
                    RegisteredDocument.signature_sha256.in_(list(by_value))
                )
            ).all()
            candidates += [
                (by_value[r.signature_sha256], r.id, r, None)  # type: ignore[index]
                for r in rows
            ]
        if not candidates:
            return dict(NOT_FOUND)
        # The newest registered revision (the longest prefix); of one revision, the newest
        # registration.
        end, _, row, matched = max(candidates, key=lambda c: (c[0], c[1]))
        record = _record(session, services, row, matched=matched)
    if end == len(pdf):
        # The registered bytes but for the unsigned part of the last signature's /Contents.
        section = {**record.to_public_dict(), "matched": "file"}
        inner = _withdrawn_inside(services, [d for d, _ in signed], record.public_id)
        if inner is not None:
            section["contains"] = inner
        return section
    # Only document timestamps (and the DSS they bring) after the issued revision: the
    # service's own extension (red team 12 F5), not content; the conclusion still checks the
    # modification analysis before believing it.
    how = VALIDATION_DATA if only_timestamps_after(pdf, end) else "revision"
    return {**record.to_public_dict(), "matched": how}


def _withdrawn_inside(
    services: Services, revisions: list[str], own_public_id: str
) -> dict[str, Any] | None:
    """The public record of a registered document among ``revisions`` (SHA-256 hex, newest
    first: the signed revisions of a file that is itself registered) that is no longer in
    force (revoked or superseded), else ``None``.

    Why: another agency that signs an issued document further (a countersignature, a seal)
    registers the result as its own record, unlinked from the issuer's (tenant isolation).
    When the issuer then revoked its decision, the countersigned copy still read "đang có hiệu
    lực" (new user 18 #1): the document inside it, the one that has legal force, was withdrawn.
    Public metadata only (the holder of the file holds the issuer's document too)."""
    if not revisions:
        return None
    with services.db.transaction() as session:
        rows = session.scalars(
            select(RegisteredDocument).where(RegisteredDocument.sha256.in_(revisions))
        ).all()
        order = {d: i for i, d in enumerate(revisions)}
        for row in sorted(rows, key=lambda r: (order[r.sha256], -r.id)):
            record = _record(session, services, row)
            governed = record.status_from.public_id if record.status_from else record.public_id
            if record.status in ("revoked", "superseded") and governed != own_public_id:
                # (An earlier version of the file's own record takes its status from the file's
                # record, status_from: that is the file's own status, not another's.)
                return record.to_public_dict()
    return None


# The newest registration of a document (bytes) by the agency: built once with bound
# parameters (per signature, building and keying the statement cost more than running it).
_REGISTERED = RegisteredDocument.__table__
_PREVIOUS = (
    select(_REGISTERED.c.id)
    .where(
        _REGISTERED.c.sha256 == bindparam("sha256"),
        _REGISTERED.c.agency_id == bindparam("agency_id"),
    )
    .order_by(_REGISTERED.c.id.desc())
    .limit(1)
)


def register_signed(
    session: Session,
    *,
    agency_id: int,
    document: Document,
    public_id: str,
    signed_at: datetime,
    input_sha256: str,
    kind: str | None = None,
    document_number: str | None = None,
    signature_sha256: str | None = None,
) -> None:
    """Register the signed ``document`` in ``session``'s transaction (the one that stores it:
    nothing half-written; one INSERT, not an object of the session's unit of work).
    ``signature_sha256``: of its last signature's value (:func:`signature_digests`).
    ``input_sha256``: of the document that was signed; when it is one of the same agency's
    registered documents, the new record signs it further (that one stays in force and links
    to this one). Another agency's registered input is not linked: its record must not point
    at this agency's."""
    previous = session.execute(
        _PREVIOUS, {"sha256": input_sha256, "agency_id": agency_id}
    ).scalar_one_or_none()
    session.execute(
        _REGISTERED.insert(),
        [
            {
                "public_id": public_id,
                "agency_id": agency_id,
                "document_id": document.id,
                "sha256": document.sha256,
                "signature_sha256": signature_sha256,
                "dossier_code": document.dossier_code,
                "result_code": document.result_code,
                "document_number": document_number,
                "kind": kind,
                "signed_at": signed_at,
                "registered_at": datetime.now(UTC).replace(microsecond=0),
                "status": IN_FORCE,
                "previous_id": previous,
            }
        ],
    )


def _own(session: Session, agency: Agency, public_id: str) -> RegisteredDocument | None:
    if not isinstance(public_id, str) or PUBLIC_ID.fullmatch(public_id) is None:
        return None
    return session.scalars(
        select(RegisteredDocument).where(
            RegisteredDocument.public_id == public_id,
            RegisteredDocument.agency_id == agency.id,
        )
    ).first()


def get_for_agency(services: Services, agency: Agency, public_id: str) -> RegistryRecord:
    """The agency's own registered document (full record); 404
    ``REGISTRY_RECORD_NOT_FOUND`` when unknown, malformed or another agency's (the same
    answer)."""
    with services.db.transaction() as session:
        row = _own(session, agency, public_id)
        if row is None:
            raise errors.RegistryRecordNotFound()
        return _record(session, services, row)


def check_reason(reason: object) -> str:
    """A status change's reason: Vietnamese free text, 1 to :data:`MAX_REASON_CHARS`
    characters after trimming, no control character; 422 ``INVALID_REGISTRY_REASON``."""
    if not isinstance(reason, str):
        raise errors.InvalidRegistryReason()
    text = reason.strip()
    if not text or not is_clean_text(text, MAX_REASON_CHARS):
        raise errors.InvalidRegistryReason(details={"max_chars": MAX_REASON_CHARS})
    return text


def _change_status(
    services: Services,
    agency: Agency,
    public_id: str,
    *,
    status: str,
    reason: str,
    actor: str,
    superseded_by: str | None = None,
) -> RegistryRecord:
    reason = check_reason(reason)
    now = datetime.now(UTC).replace(microsecond=0)
    with services.db.transaction() as session:
        row = _own(session, agency, public_id)
        if row is None:
            raise errors.RegistryRecordNotFound()
        newer: RegisteredDocument | None = None
        if status == SUPERSEDED:
            if not isinstance(superseded_by, str) or PUBLIC_ID.fullmatch(superseded_by) is None:
                # Empty or not a public id at all: said apart from an unknown one (the README's
                # "malformed" case); it reveals nothing about other agencies' records.
                raise errors.InvalidSupersedingDocument(
                    "Mã tra cứu của văn bản thay thế không đúng định dạng (26 ký tự a-z, 2-7).",
                    details={"problem": "malformed"},
                )
            newer = _own(session, agency, superseded_by)
            # Another agency's document answers as an unknown one (no detail tells them apart).
            if newer is None:
                raise errors.InvalidSupersedingDocument(details={"problem": "not_found"})
            if newer.id == row.id:
                raise errors.InvalidSupersedingDocument(
                    "Văn bản không thể được thay thế bởi chính nó.", details={"problem": "self"}
                )
            if _same_version_chain(session, row.id, newer.id):
                # Red team 21b, R21B-2: a version signed further from the record (or one it
                # was signed further from) is the same document; the earlier version takes
                # the later one's status, so the record read "superseded by itself".
                raise errors.InvalidSupersedingDocument(
                    "Văn bản không thể được thay thế bởi một phiên bản của chính nó (văn bản "
                    "được ký tiếp từ nó, hoặc văn bản mà nó được ký tiếp từ đó).",
                    details={"problem": "self"},
                )
            # Red team 21b, R21B-3: the superseding record (and the versions its status comes
            # from) is read under row locks taken in one order, so that a concurrent change of
            # it (revoked, or superseding this record) is either seen here or waits for this
            # transaction (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises writers already).
            locked = _lock(session, {row.id, newer.id, *_version_path(session, newer)})
            latest = _latest_version(session, newer)
            path = set(_version_path(session, newer))
            if not path <= locked:
                # A version signed further meanwhile: lock it too, then read again.
                _lock(session, path - locked)
                latest = _latest_version(session, newer)
            if latest.status != IN_FORCE:
                # Also what keeps the links acyclic: a superseded document is never in force.
                raise errors.InvalidSupersedingDocument(
                    "Văn bản thay thế đã bị thu hồi hoặc đã được thay thế.",
                    details={"problem": "not_in_force"},
                )
        else:
            _lock(session, {row.id})
        if row.status == IN_FORCE:
            latest_own = _latest_version(session, row)
            if latest_own.id != row.id:
                # The version signed further from this one answers for it (F5): changing this
                # one alone left a file reading "thay thế" in its headline over an "in force"
                # record, and the QR of the newer version still in force (new user 22 #2).
                raise errors.RegistryHasNewerVersion(
                    details={"newer_version": latest_own.public_id}
                )
        # The state machine in one conditional UPDATE: of two concurrent changes, one finds
        # the row in force and the other none (409), on both databases.
        changed = session.execute(
            update(RegisteredDocument)
            .where(RegisteredDocument.id == row.id, RegisteredDocument.status == IN_FORCE)
            .values(
                status=status,
                status_changed_at=now,
                reason=reason,
                superseded_by_id=newer.id if newer is not None else None,
            )
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            raise errors.RegistryStatusFinal(details={"status": row.status})
        audit.append(
            session,
            actor=actor,
            action=f"registry.{status}",
            agency_code=agency.code,
            subject=row.public_id,
            details={
                "document_id": row.document_id,
                "reason": reason,
                "superseded_by": newer.public_id if newer is not None else None,
            },
        )
        session.expire(row)
        return _record(session, services, row)


def revoke(
    services: Services, agency: Agency, public_id: str, *, reason: str, actor: str
) -> RegistryRecord:
    """Mark the agency's registered document revoked (thu hồi), with ``reason``, audited in
    the same transaction. 404 ``REGISTRY_RECORD_NOT_FOUND`` (unknown, malformed, another
    agency's); 409 ``REGISTRY_STATUS_FINAL`` when already revoked or superseded; 422
    ``INVALID_REGISTRY_REASON``."""
    return _change_status(services, agency, public_id, status=REVOKED, reason=reason, actor=actor)


def supersede(
    services: Services,
    agency: Agency,
    public_id: str,
    *,
    superseded_by: str,
    reason: str,
    actor: str,
) -> RegistryRecord:
    """Mark the agency's registered document superseded (được thay thế) by another of its
    registered documents (``superseded_by``: that one's public id, in force, not itself),
    with ``reason``, audited in the same transaction. Errors as :func:`revoke`, plus 422
    ``INVALID_SUPERSEDING_DOCUMENT`` (unknown or another agency's: the same answer; itself;
    not in force)."""
    return _change_status(
        services,
        agency,
        public_id,
        status=SUPERSEDED,
        reason=reason,
        actor=actor,
        superseded_by=superseded_by,
    )
