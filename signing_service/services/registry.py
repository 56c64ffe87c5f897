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

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from signing_service import audit, errors
from signing_service.services.container import Services
from signing_service.services.documents import is_clean_text
from signing_service.store.models import Agency, Document, RegisteredDocument
from signing_service.timefmt import api_time

IN_FORCE = "in_force"
REVOKED = "revoked"
SUPERSEDED = "superseded"
STATUSES = (IN_FORCE, REVOKED, SUPERSEDED)

# 128 random bits in RFC 4648 base32, lower case, unpadded: 26 characters from a-z and 2-7
# (no 0/1/8/9, no case, no "-"/"_": read aloud or typed from paper without ambiguity, short
# enough for a small QR code). Unguessable: the registry is not an enumerable list.
PUBLIC_ID = re.compile(r"[a-z2-7]{26}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# The longest reason for a status change, in characters (the column holds 500).
MAX_REASON_CHARS = 500
# The link's path under the public base URL: the public page of issue 11 (page lane).
LINK_PATH = "xac-minh/"

# A signature dictionary's /ByteRange [0 b c d] (ISO 32000-1 §12.8.1): the signed revision is
# the file's first c + d bytes. At most this many are looked at (a hostile file may carry
# thousands).
_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*0\s+(\d{1,12})\s+(\d{1,12})\s+(\d{1,12})\s*\]")
MAX_REVISIONS_LOOKED_UP = 32
# ``matched`` of a registry section whose file is a registered revision followed only by
# validation data and document timestamps (an extended or preserved copy).
VALIDATION_DATA = "validation_data"


def new_public_id() -> str:
    """A fresh public id: 128 bits from :mod:`secrets`, base32 lower case, unpadded."""
    return base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()


def public_link(base_url: str | None, public_id: str) -> str | None:
    """The public link of a registered document: ``SIGNING_SERVICE_PUBLIC_BASE_URL`` followed
    by ``/xac-minh/{public_id}`` (``None`` when no base URL is configured). A base ending with
    ``=`` is a portal's query parameter: the id is appended to it as it is."""
    if not base_url:
        return None
    if base_url.endswith("="):
        return base_url + public_id
    return f"{base_url.rstrip('/')}/{LINK_PATH}{public_id}"


@dataclass(frozen=True)
class LinkedRecord:
    """Another registered document a record points to: its public id and link (``document_id``
    only for the agency's own view)."""

    public_id: str
    link: str | None
    document_id: str

    def to_public_dict(self) -> dict[str, Any]:
        return {"public_id": self.public_id, "link": self.link}


@dataclass(frozen=True)
class RegistryRecord:
    """One registered document as read, with its links resolved.

    Public: ``public_id``, ``link``, the agency, ``kind``, the codes, ``issued_at`` (the
    signature's claimed signing time), ``status`` and its change, ``superseded_by`` and
    ``signed_further_by`` (the newer version the service signed from this one). Agency-only:
    ``document_id``, ``sha256``, ``registered_at``, ``signs_further`` (the version this one
    was signed from)."""

    public_id: str
    link: str | None
    agency_code: str
    agency_name: str
    kind: str | None
    dossier_code: str | None
    result_code: str | None
    document_number: str | None
    issued_at: datetime
    status: str
    status_changed_at: datetime | None
    reason: str | None
    superseded_by: LinkedRecord | None
    signed_further_by: LinkedRecord | None
    status_from: LinkedRecord | None
    # Agency-only.
    document_id: str
    agency_id: int
    sha256: str
    registered_at: datetime
    signs_further: LinkedRecord | None
    # Versions (issue 12, services/extension.py): the version of the document that was matched
    # (the record's own, its newest, when looked up by public id), and whether a newer version
    # of it exists (an extension to B-LT/B-LTA or a renewed archive timestamp).
    version: int = 1
    newer_version: bool = False

    def to_public_dict(self) -> dict[str, Any]:
        """The public metadata only (the ``registry`` section of a verification report, the
        anonymous ``GET /v1/registry/{public_id}``); times ISO 8601 at +07:00::

            {"found": true, "public_id", "link", "agency": {"code", "name"}, "kind",
             "dossier_code", "result_code", "document_number", "issued_at", "status",
             "status_changed_at", "reason", "superseded_by": {"public_id", "link"} | null,
             "signed_further_by": {"public_id", "link"} | null,
             "status_from": {"public_id", "link"} | null,
             "version": int, "newer_version": bool}

        ``status``, ``status_changed_at``, ``reason`` and ``superseded_by`` are those of the
        latest version the service signed further from this one when this one is in force
        itself (red team 11 F5: revoking the final version revokes the copies it was signed
        from); ``status_from`` names that version (``null``: the record's own status).
        Times in whole seconds. ``version``: the matched version of the document (1: as
        signed; 2, 3, …: extended or renewed by the service, services/extension.py);
        ``newer_version``: a newer version of it exists (the record stands for the newest).
        """
        return {
            "found": True,
            "public_id": self.public_id,
            "link": self.link,
            "agency": {"code": self.agency_code, "name": self.agency_name},
            "kind": self.kind,
            "dossier_code": self.dossier_code,
            "result_code": self.result_code,
            "document_number": self.document_number,
            "issued_at": _seconds(self.issued_at),
            "status": self.status,
            "status_changed_at": (
                _seconds(self.status_changed_at) if self.status_changed_at else None
            ),
            "reason": self.reason,
            "superseded_by": self.superseded_by.to_public_dict() if self.superseded_by else None,
            "signed_further_by": (
                self.signed_further_by.to_public_dict() if self.signed_further_by else None
            ),
            "status_from": self.status_from.to_public_dict() if self.status_from else None,
            "version": self.version,
            "newer_version": self.newer_version,
        }

    def to_agency_dict(self) -> dict[str, Any]:
        """:meth:`to_public_dict` plus what the issuing agency alone sees: the document's id,
        its SHA-256, when it was registered, and the document ids of the linked records."""

        def linked(record: LinkedRecord | None) -> dict[str, Any] | None:
            if record is None:
                return None
            return {**record.to_public_dict(), "document_id": record.document_id}

        out = self.to_public_dict()
        del out["found"]
        out.update(
            document_id=self.document_id,
            sha256=self.sha256,
            registered_at=_seconds(self.registered_at),
            superseded_by=linked(self.superseded_by),
            signed_further_by=linked(self.signed_further_by),
            status_from=linked(self.status_from),
            signs_further=linked(self.signs_further),
        )
        return out


NOT_FOUND: dict[str, Any] = {"found": False}


def _seconds(moment: datetime) -> str:
    """:func:`api_time` in whole seconds (the API's times, red team 11 F11): stored times may
    carry microseconds."""
    return api_time(moment.replace(microsecond=0))


def _linked(session: Session, base: str | None, row_id: int | None) -> LinkedRecord | None:
    if row_id is None:
        return None
    row = session.get(RegisteredDocument, row_id)
    if row is None:
        return None
    return LinkedRecord(row.public_id, public_link(base, row.public_id), row.document_id)


# How far a chain of versions signed further is followed (officer → seal → … ; a service
# signing the same document 25 times is already unusual). Bounds a lookup's queries.
MAX_VERSION_CHAIN = 64


def _newer_version(session: Session, row_id: int) -> int | None:
    """The id of the newest record signed further from record ``row_id`` (same agency: see
    :func:`register_signed`), or ``None``."""
    return session.scalars(
        select(RegisteredDocument.id)
        .where(RegisteredDocument.previous_id == row_id)
        .order_by(RegisteredDocument.id.desc())
        .limit(1)
    ).first()


def _latest_version(session: Session, row: RegisteredDocument) -> RegisteredDocument:
    """The record whose status answers for ``row`` (an in-force record): the latest version
    the service signed further from it, following ``previous_id`` forward (the newest at each
    step), at most :data:`MAX_VERSION_CHAIN` steps; ``row`` itself when none. Only an in-force
    version's successor is followed: a revoked or superseded one answers for what precedes."""
    current = row
    seen = {row.id}
    for _ in range(MAX_VERSION_CHAIN):
        if current.status != IN_FORCE:
            break
        newer_id = _newer_version(session, current.id)
        if newer_id is None or newer_id in seen:
            break
        newer = session.get(RegisteredDocument, newer_id)
        if newer is None:
            break
        seen.add(newer_id)
        current = newer
    return current


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


# How many versions a lookup follows forward (an archive timestamp renewed every few years).
MAX_VERSION_WALK = 1000


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


def signed_revision_digests(pdf: bytes) -> list[str]:
    """SHA-256 (hex) of each signed revision of ``pdf`` that is not the whole file, newest
    first: for every signature whose /ByteRange starts at 0, the first ``c + d`` bytes (the
    revision it signed, its own signature included). One pass over the file whatever the
    number of revisions (the digest is carried from one revision's end to the next); at most
    :data:`MAX_REVISIONS_LOOKED_UP` of them (the newest)."""
    return [digest for digest, _ in _signed_revisions(pdf)]


def _signed_revisions(pdf: bytes) -> list[tuple[str, int]]:
    """(SHA-256 hex, end offset) of each signed revision (:func:`signed_revision_digests`)."""
    ends: set[int] = set()
    for match in _BYTE_RANGE.finditer(pdf):
        b, c, d = (int(g) for g in match.groups())
        end = c + d
        if b <= c and 0 < end < len(pdf):
            ends.add(end)
    chosen = sorted(ends)[-MAX_REVISIONS_LOOKED_UP:]
    view = memoryview(pdf)
    running = hashlib.sha256()
    done = 0
    found = []
    for end in chosen:
        running.update(view[done:end])
        done = end
        found.append((running.copy().hexdigest(), end))
    return found[::-1]


def only_timestamps_after(pdf: bytes, end: int) -> bool:
    """Whether every signature dictionary of ``pdf`` whose signed revision ends after byte
    ``end`` is a document timestamp (/Type /DocTimeStamp, ISO 32000-2 §12.8.5): what the
    service's extension and preservation add after an issued revision (DSS + document
    timestamps, ETSI EN 319 142-1 §5.4/§5.5: validation data, not content). It says nothing
    about unsigned changes (an annotation in the DSS revision): the verifier's modification
    analysis of the last signature decides those (:mod:`signing_service.services.conclusion`).
    A file pyHanko cannot read answers False (red team 12 F5)."""
    from io import BytesIO

    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        reader = PdfFileReader(BytesIO(pdf), strict=False)
        revision = None
        for embedded in reader.embedded_signatures:
            start, length = embedded.byte_range[2], embedded.byte_range[3]
            if start + length > end and embedded.sig_object_type != "/DocTimeStamp":
                return False
            if start + length == end:
                revision = embedded.signed_revision
        if revision is None:
            return False
        # The document's metadata (Info dictionary, XMP stream) is not validation data either;
        # the modification analysis accepts its changes at the LTA level (a title edited after
        # issue), so it is compared here.
        issued = reader.get_historical_resolver(revision)
        return _metadata(issued.trailer_view, issued.root) == _metadata(
            reader.trailer_view, reader.root
        )
    except Exception:  # noqa: BLE001 - a hostile file: never the benign answer
        return False


def _metadata(trailer: Any, root: Any) -> tuple[Any, bytes | None]:
    """The Info dictionary (each entry resolved, as text) and the XMP metadata stream's bytes."""
    info = trailer.get("/Info")
    entries = (
        sorted((str(k), str(v.get_object())) for k, v in info.get_object().items())
        if info is not None
        else None
    )
    xmp = root.get("/Metadata")
    return entries, (xmp.get_object().data if xmp is not None else None)


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
    if found is not None:
        return {**found.to_public_dict(), "matched": "file"}
    signed = _signed_revisions(pdf)
    revisions = [digest for digest, _ in signed]
    if revisions:
        with services.db.transaction() as session:
            rows = session.scalars(
                select(RegisteredDocument).where(RegisteredDocument.sha256.in_(revisions))
            ).all()
            order = {d: i for i, d in enumerate(revisions)}
            candidates: list[tuple[int, int, RegisteredDocument, Document | None]] = [
                (order[r.sha256], -r.id, r, None) for r in rows
            ]
            # An earlier version's bytes inside the file (content appended to a version the
            # service has since extended).
            candidates += [
                (order[d.sha256], -r.id, r, d) for d, r in _by_earlier_versions(session, revisions)
            ]
            if candidates:
                # The newest revision that is registered (the longest prefix).
                position, _, row, matched = min(candidates, key=lambda c: (c[0], c[1]))
                record = _record(session, services, row, matched=matched)
                # Only document timestamps (and the DSS they bring) after the issued revision:
                # the service's own extension (red team 12 F5), not content; the conclusion
                # still checks the modification analysis before believing it.
                how = (
                    VALIDATION_DATA
                    if only_timestamps_after(pdf, signed[position][1])
                    else "revision"
                )
                return {**record.to_public_dict(), "matched": how}
    return dict(NOT_FOUND)


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
) -> RegisteredDocument:
    """Register the signed ``document`` in ``session``'s transaction (the one that stores it:
    nothing half-written). ``input_sha256``: of the document that was signed; when it is one
    of the same agency's registered documents, the new record signs it further (that one
    stays in force and links to this one). Another agency's registered input is not linked:
    its record must not point at this agency's."""
    previous = session.scalars(
        select(RegisteredDocument.id)
        .where(
            RegisteredDocument.sha256 == input_sha256,
            RegisteredDocument.agency_id == agency_id,
        )
        .order_by(RegisteredDocument.id.desc())
        .limit(1)
    ).first()
    row = RegisteredDocument(
        public_id=public_id,
        agency_id=agency_id,
        document_id=document.id,
        sha256=document.sha256,
        dossier_code=document.dossier_code,
        result_code=document.result_code,
        document_number=document_number,
        kind=kind,
        signed_at=signed_at,
        registered_at=datetime.now(UTC).replace(microsecond=0),
        status=IN_FORCE,
        previous_id=previous,
    )
    session.add(row)
    return row


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
            if _latest_version(session, newer).status != IN_FORCE:
                # Also what keeps the links acyclic: a superseded document is never in force.
                raise errors.InvalidSupersedingDocument(
                    "Văn bản thay thế đã bị thu hồi hoặc đã được thay thế.",
                    details={"problem": "not_in_force"},
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


STATUS_LABELS = {
    IN_FORCE: "đang có hiệu lực",
    REVOKED: "đã bị thu hồi",
    SUPERSEDED: "đã được thay thế",
}


def registry_sentence(section: dict[str, Any]) -> str:
    """One Vietnamese sentence for people (CLI, page) from a report's ``registry`` section:
    who issued the document and when, and its status; or that it was not issued through this
    service (not an error: it may have been issued elsewhere)."""
    if not section.get("found"):
        return (
            "Văn bản không được phát hành qua dịch vụ này (không có trong sổ đăng ký); "
            "điều đó không có nghĩa là chữ ký không hợp lệ."
        )
    agency = section["agency"]
    issued = datetime.fromisoformat(section["issued_at"]).strftime("%H:%M ngày %d/%m/%Y")
    text = f"Văn bản do {agency['name']} ({agency['code']}) phát hành lúc {issued}"
    if section.get("matched") == "revision":
        text += " (tệp có thêm nội dung được thêm vào sau khi phát hành)"
    elif section.get("matched") == VALIDATION_DATA:
        text += " (tệp có thêm dữ liệu xác minh dài hạn và dấu thời gian sau khi phát hành)"
    text += f"; trạng thái: {STATUS_LABELS.get(section['status'], section['status'])}"
    if section.get("reason"):
        text += f" — lý do: {section['reason']}"
    newer = section.get("superseded_by") or section.get("signed_further_by")
    if newer is not None:
        label = "văn bản thay thế" if section.get("superseded_by") else "phiên bản ký tiếp"
        text += f"; {label}: {newer.get('link') or newer['public_id']}"
    return text + "."
