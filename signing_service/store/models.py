from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Agency(Base):
    """Cơ quan: identified by its mã định danh (``agency_code``, e.g. 000.00.12.H12)."""

    __tablename__ = "agencies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    # Created by the development bootstrap: production mode refuses to start while any exist.
    dev: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiClient(Base):
    """An API key: a client system (one-stop system, document-management system) bound to one
    agency, or the platform operator's key (role ``operator``, no agency)."""

    __tablename__ = "api_clients"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # None only for role "operator": the operator acts on the platform, never as an agency.
    agency_id: Mapped[int | None] = mapped_column(
        ForeignKey("agencies.id"), index=True, nullable=True
    )
    name: Mapped[str] = mapped_column(String(255))
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    # SHA-256 of the secret part; the key itself is shown once and never stored.
    key_hash: Mapped[str] = mapped_column(String(64))
    # client: signs and reads its agency's documents; admin: also manages its signing profiles;
    # operator: the platform operator's API (/v1/operator/...), no agency.
    role: Mapped[str] = mapped_column(String(16), default="client", server_default="client")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The key stops working at this time (an expiry chosen at creation, or the end of the
    # overlap after a rotation); None: until revoked.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Key id of the key that replaced this one (rotation); None while it has not been rotated.
    replaced_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    agency: Mapped[Agency | None] = relationship()


class SigningKey(Base):
    """A key, or an officer's certificate, that the platform operator registered for one agency
    (``signing-service key add``); agency administrators choose among their own by ``name``.

    ``kind``: ``pkcs12`` (held by the service: its material is sealed in the key store under a
    data key of its own, ``wrapped_key`` being that data key wrapped by the master secret),
    ``pkcs11`` (an HSM key: ``reference`` names a configured module, the token and the key; the
    PIN is sealed like PKCS#12 material), ``csc`` (a remote signing credential: ``reference``
    names a configured provider and the credential ID) or ``officer`` (an officer's own
    certificate for two-step signing: no secret). ``certificate`` and ``chain`` are what was
    checked at registration; a source refuses a key whose certificate has changed since.
    Keys are disabled, never deleted: signatures and audit entries keep referring to them.
    """

    __tablename__ = "signing_keys"
    __table_args__ = (
        UniqueConstraint("agency_id", "name", name="uq_signing_keys_agency_id_name"),
        # The target of the profiles' (agency_id, key_id) foreign key: a profile can only
        # point at a key of its own agency, whatever writes the row.
        UniqueConstraint("agency_id", "id", name="uq_signing_keys_agency_id_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    certificate: Mapped[bytes] = mapped_column(LargeBinary)  # DER
    chain: Mapped[bytes] = mapped_column(LargeBinary)  # concatenated PEM
    certificate_sha256: Mapped[str] = mapped_column(String(64), index=True)
    # Non-secret, kind-specific: {"module", "token", "object", "id"} | {"provider", "credential"}.
    reference: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Registered by the development bootstrap: production mode refuses to start while any exist.
    dev: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    agency: Mapped[Agency] = relationship()


class SigningProfile(Base):
    """An agency's signing settings, managed by its administrator: which of the agency's
    registered keys signs (``key_id``), or two-step signing with an officer's own token
    (``two_step``; ``key_id`` then names a registered officer certificate, or none for any of
    the agency's registered officers), the level, the operator-configured TSA by name, and the
    stamp. Names are unique per agency."""

    __tablename__ = "signing_profiles"
    __table_args__ = (
        UniqueConstraint("agency_id", "name", name="uq_signing_profiles_agency_id_name"),
        ForeignKeyConstraint(
            ["agency_id", "key_id"],
            ["signing_keys.agency_id", "signing_keys.id"],
            name="fk_signing_profiles_agency_id_key_id_signing_keys",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    two_step: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    level: Mapped[str] = mapped_column(String(8), default="B-T")
    # The name of a TSA in the operator's SIGNING_SERVICE_TSAS (None: the default TSA).
    tsa: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    location: Mapped[str | None] = mapped_column(String(255), nullable=True)
    appearance: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    dev: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Profiles are disabled, never deleted: signatures keep referring to them.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    agency: Mapped[Agency] = relationship()


class AppearanceImage(Base):
    """An image a visible signature shows (Nghị định 30/2020, Appendix I), uploaded by the
    agency's administrator: ``role`` ``seal`` (the agency's seal, red) or ``signature`` (an
    officer's handwritten signature, blue; ``officer`` names whose, free text). Screened PNG,
    stored content-addressed under ``storage_key``; ``width_mm`` × ``height_mm`` is the size it
    is printed at (a seal's real size). Profiles refer to it by ``name`` (unique per agency)."""

    __tablename__ = "appearance_images"
    __table_args__ = (
        UniqueConstraint("agency_id", "name", name="uq_appearance_images_agency_id_name"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))  # seal | signature
    officer: Mapped[str | None] = mapped_column(String(255), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    width_px: Mapped[int] = mapped_column(Integer)
    height_px: Mapped[int] = mapped_column(Integer)
    width_mm: Mapped[float] = mapped_column(Float)
    height_mm: Mapped[float] = mapped_column(Float)
    storage_key: Mapped[str] = mapped_column(String(512), index=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Document(Base):
    __tablename__ = "documents"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # original | signed
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(128))
    # None when the content is the first ``size`` bytes of another document's object: a signed
    # PDF is an incremental update, so it begins with the original byte for byte, and storing
    # the original again would double the writes for nothing.
    storage_key: Mapped[str | None] = mapped_column(String(512), unique=True, nullable=True)
    content_of: Mapped[str | None] = mapped_column(
        ForeignKey("documents.id"), nullable=True, index=True
    )
    filename: Mapped[str | None] = mapped_column(String(255), nullable=True)
    dossier_code: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # {dossier_code}-KQ{n} (Nghị định 45/2020 Art. 14.3), on the signed document it names;
    # not unique: a second signature on the same result (seal after officer) keeps its code.
    result_code: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Versions (issue 12, services/extension.py): an extended signed document (B-LT, B-LTA, a
    # renewed archive timestamp) is a new row naming the version it extends. Unique: a
    # version is extended once, so the versions form one line and two concurrent renewals
    # of the same version cannot both commit (the second meets the constraint).
    previous_version_id: Mapped[str | None] = mapped_column(
        ForeignKey("documents.id"), nullable=True, unique=True
    )
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The PAdES level of this version when the service produced it by extension (None: the
    # signing's own level, on its Signature row).
    level: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # not_after of the TSA certificate of the newest timestamp in this version (preservation
    # plans renewals with a query on it).
    archive_tsa_not_after: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )
    # Digest algorithm of the newest timestamp in this version (asn1crypto's name, e.g.
    # "sha256"), noted by preservation (services/preservation.py) when it first looks at the
    # version: a version whose algorithm the operator retires is due for renewal.
    archive_digest_algorithm: Mapped[str | None] = mapped_column(String(32), nullable=True)


class RegisteredDocument(Base):
    """The registry of issued documents (sổ đăng ký văn bản đã phát hành, issue 11): one row
    for every signed document the service stores, written in the transaction that stores it.

    ``public_id``: the unguessable id a citizen's link and the document's QR code carry
    (128 random bits, base32); the row's public metadata is what anyone holding the file or the
    link may see. ``sha256``: of the final bytes, which a verification looks up. ``status``:
    ``in_force``, then at most once ``revoked`` or ``superseded`` (by ``superseded_by_id``, the
    same agency's): both final. ``previous_id``: the registered document this one signs further
    (the officer's version a seal was added to); that one stays in force and is "signed further
    by" this one."""

    __tablename__ = "registered_documents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id"), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # The document's last signature as registry_records.signature_key gives it: SHA-256 over
    # the SHA-256 of the bytes its /ByteRange covers and its CMS signature value. Found again
    # when only the unsigned bytes of /Contents differ (padding, the hex case, a replaced or
    # removed timestamp token), which anyone can change (new user 22 #1: a revoked decision so
    # altered read "Hợp lệ", not found); not for changed content or another signer's CMS.
    # NULL for records registered before migration 0018: found by ``sha256`` only.
    signature_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    dossier_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Số, ký hiệu (an annex's: of the main document), when the request gave one.
    document_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The appearance kind signed with (person, seal, copy, annex, digitised, none).
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="in_force", server_default="in_force")
    status_changed_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    superseded_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("registered_documents.id"), nullable=True
    )
    previous_id: Mapped[int | None] = mapped_column(
        ForeignKey("registered_documents.id"), nullable=True, index=True
    )


class ResultCodeCounter(Base):
    """The highest result number ``n`` used in an agency's dossier, assigned (``auto``) or
    given by the caller: the next assigned code is ``{dossier_code}-KQ{last_number + 1}``. One
    row per dossier, incremented by a single UPDATE in the transaction that stores the signed
    document: PostgreSQL's row lock (and SQLite's write lock, BEGIN IMMEDIATE) serialise two
    requests for the same dossier, so no number is assigned twice, and a failed signature
    rolls its increment back."""

    __tablename__ = "result_code_counters"
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), primary_key=True)
    dossier_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)


class Attachment(Base):
    """A dossier component (thành phần hồ sơ) stored for an agency's one-stop system.

    Only committed rows exist: the object is written first, then this row (with its audit entry)
    in one transaction. An object without a row is an orphan that ``storage reconcile`` removes.
    """

    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("agency_id", "idempotency_key"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    dossier_code: Mapped[str] = mapped_column(String(64), index=True)
    component: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str | None] = mapped_column(String(255), nullable=True)
    media_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    storage_key: Mapped[str] = mapped_column(String(512), unique=True)
    # A cleaned copy (active PDF content removed) kept beside the untouched original.
    sanitized_key: Mapped[str | None] = mapped_column(String(512), unique=True, nullable=True)
    sanitized_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sanitized_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    screening: Mapped[dict[str, Any]] = mapped_column(JSON)
    retain_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Signature(Base):
    __tablename__ = "signatures"
    # An Idempotency-Key is unique per agency (services/signing.py: a replay answers with the
    # first signature; two concurrent requests with one key cannot both commit).
    __table_args__ = (
        UniqueConstraint(
            "agency_id", "idempotency_key", name="uq_signatures_agency_id_idempotency_key"
        ),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("signing_profiles.id"))
    certificate_sha256: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(8))
    field_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    input_document_id: Mapped[str] = mapped_column(ForeignKey("documents.id"))
    output_document_id: Mapped[str] = mapped_column(ForeignKey("documents.id"), unique=True)
    profile: Mapped[SigningProfile] = relationship()
    # The request's Idempotency-Key and the digest of what it asked (file, profile, options,
    # codes): the same key with another request is a conflict, never the first answer.
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditEntry(Base):
    """Append-only, hash-chained: ``hash = SHA-256(canonical(entry) || prev_hash)``, and keyed:
    ``mac = HMAC-SHA-256(audit key, canonical(entry, hash) || previous entry's mac)`` with a
    secret the database does not hold (see :mod:`signing_service.audit`)."""

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(255))
    agency_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(128))
    # Indexed (0017): evidence export finds its signature's entry by subject.
    subject: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    details: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # None only on a database upgraded to 0005 that has not yet been keyed (first keyed start).
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditHead(Base):
    """One row: the last sequence number and hash. Locked (SELECT … FOR UPDATE) by every
    append, so concurrent transactions extend the chain one after another; it also makes
    deleting the newest entries detectable."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # First entry MACed when it was appended; the entries before it existed unkeyed and were
    # MACed once, when the chain was keyed after the upgrade to 0005 (1: keyed from the start).
    keyed_from: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ExternalSession(Base):
    """State of a two-step signature between "prepare" and "complete" (kept server-side)."""

    __tablename__ = "external_sessions"
    # Step 1's Idempotency-Key, unique per agency (services/external.py).
    __table_args__ = (
        UniqueConstraint(
            "agency_id", "idempotency_key", name="uq_external_sessions_agency_id_idempotency_key"
        ),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("signing_profiles.id"))
    state: Mapped[str] = mapped_column(String(16))  # pending | completing | completed
    # The step 2 that holds a "completing" session (a random token) and since when: a claim
    # older than the lease is taken over (services/external.py, CLAIM_LEASE_SECONDS).
    claim: Mapped[str | None] = mapped_column(String(32), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    level: Mapped[str] = mapped_column(String(8))
    certificate: Mapped[bytes] = mapped_column(LargeBinary)
    chain: Mapped[bytes] = mapped_column(LargeBinary)  # concatenated PEM
    md_algorithm: Mapped[str] = mapped_column(String(16))
    signed_attrs: Mapped[bytes] = mapped_column(LargeBinary)
    document_digest: Mapped[bytes] = mapped_column(LargeBinary)
    reserved_start: Mapped[int] = mapped_column(BigInteger)
    reserved_end: Mapped[int] = mapped_column(BigInteger)
    prepared_pdf: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    input_pdf_sha256: Mapped[str] = mapped_column(String(64))
    input_size: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str | None] = mapped_column(String(255), nullable=True)
    dossier_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The result code asked for at step 1: a given {dossier_code}-KQ{n}, or "auto" (the next
    # number is assigned when the signed document is stored, at step 2).
    result_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The signed document's id, chosen at step 1 when a QR code on the page links to it.
    document_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    signature_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # The signed document's registry id, chosen at step 1 (its QR code links to it), and what
    # the registry records of the appearance: {"kind", "document_number"}.
    public_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    registration: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Step 1's Idempotency-Key and the digest of its request (a resend answers this session).
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class VerificationCount(Base):
    """How many anonymous verifications ended with ``outcome`` (a verdict, or the code that
    refused the request) on ``day`` (Vietnam time): counted in memory and added here
    periodically, instead of one audit entry each (issue 9)."""

    __tablename__ = "verification_counts"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    outcome: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class ReportLink(Base):
    """A "Tải báo cáo PDF" link of the citizen's page (issue 11, web/store.py): the result
    shown (the report JSON, the QR comparison's public id, the uploaded file's name) and, once
    rendered, the sealed PDF, so every worker process serves the same bytes and the report is
    sealed and timestamped once. Keyed by the SHA-256 of the link's token: the table alone
    gives no usable link. Deleted once ``expires_at`` has passed."""

    __tablename__ = "report_links"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    entry: Mapped[bytes] = mapped_column(LargeBinary)
    # The report's download name (ours: bao-cao-xac-minh-<sha16>.pdf), read without the entry.
    file_name: Mapped[str] = mapped_column(String(64))
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Bytes held by this row (entry + pdf): the store's byte bound sums it.
    size: Mapped[int] = mapped_column(BigInteger)


class SignatureEvidence(Base):
    """The evidence kept for one signature (TT 15/2025 Art. 5–6, issue 12): what the
    pre-signing check relied on (the signer's certificate and chain, the OCSP responses and
    CRLs, the status and the check time) and the signature's timestamp token. The files are
    objects in storage, content-addressed (``evidence/<sha256[:2]>/<sha256>``: the same answer
    stored once however many signatures relied on it), listed by
    :class:`SignatureEvidenceItem`; ``manifest.json`` is one of them.

    ``document_kind``: the appearance kind signed with (the registry's kind; ``unspecified``
    for a stamp without kind): retention is set per agency and kind. ``purged_at``: when
    ``evidence purge`` removed the files (the row stays, so the signature says its evidence
    was purged rather than never kept)."""

    __tablename__ = "signature_evidence"
    signature_id: Mapped[str] = mapped_column(ForeignKey("signatures.id"), primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    document_kind: Mapped[str] = mapped_column(String(16))
    check_status: Mapped[str] = mapped_column(String(16))
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Where the status came from: the kinds of answer relied on ("ocsp", "crl").
    sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The signer's certificate as the record shows it: subject, issuer, serial, SHA-256.
    signer: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SignatureEvidenceItem(Base):
    """One file of a signature's evidence: its name in the evidence ZIP, its role
    (``manifest``, ``certificate``, ``ocsp``, ``crl``, ``timestamp``) and the SHA-256 that
    names its object. An object is deleted only once no item refers to it.

    ``content``: the file itself when it is the signature's own (its ``manifest.json``, its
    signature timestamp token): kept in the row, written in the signing transaction, instead of
    an object of its own (no sharing to gain, and one fsync'd object less per file); ``None``
    for a content-addressed object (certificates, OCSP answers, CRLs) and for rows from before
    revision 0016, whose files are objects."""

    __tablename__ = "signature_evidence_items"
    signature_id: Mapped[str] = mapped_column(
        ForeignKey("signature_evidence.signature_id"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, default=None)


class EvidenceRetention(Base):
    """An agency administrator's retention for the evidence of signatures of one document
    kind (an appearance kind, or ``*`` for every kind without its own row), in years from the
    signing time; without a row the operator's ``SIGNING_SERVICE_EVIDENCE_RETENTION_YEARS``."""

    __tablename__ = "evidence_retention"
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), primary_key=True)
    document_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    years: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LegalHold(Base):
    """A legal hold an agency administrator set on a signature's evidence (``target``
    ``signature``) or on a document (``document``: the evidence of every signature that
    signed it or produced it). Held evidence is never purged; clearing deletes the row (the
    audit log keeps both)."""

    __tablename__ = "legal_holds"
    __table_args__ = (UniqueConstraint("target", "target_id", name="uq_legal_holds_target"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    target: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(36), index=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    set_by: Mapped[str] = mapped_column(String(255))
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
