"""Dossier attachments (thành phần hồ sơ): screened, stored, served, retained.

An upload arrives as a temporary file (the API spools it while hashing). It is screened (content
sniffing, polyglots, active PDF content, zip bombs) and scanned by ClamAV when configured; only
then is the object written, and only after the object is written is its row committed, together
with its audit entry, in one transaction. A crash between the two leaves an object without a
row: invisible to users, and removed by :func:`reconcile`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from signing_service import audit, errors
from signing_service.screening import (
    DEFAULT_ALLOWED,
    MESSAGES,
    ScreeningPolicy,
    ScreeningResult,
    screen_file,
)
from signing_service.screening.clamav import ClamdUnavailable, scan_file
from signing_service.services.container import Services
from signing_service.services.documents import (
    MAX_FILENAME_CHARS,
    check_dossier_code,
    check_filename,
    printable,
)
from signing_service.store.db import connection_lost
from signing_service.store.models import Agency, AppearanceImage, Attachment, Document, new_id
from signing_service.timefmt import api_time, api_time_or_none, aware_utc
from storage import ObjectInfo, ObjectLocked, ObjectNotFound, StorageUnavailableError
from storage.base import ChunkPipe, ObjectReader

log = logging.getLogger(__name__)

# Matched whole (fullmatch): with match() and "$" a trailing newline passed.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Objects up to this size are read and checked whole before the first byte is sent, so a
# corrupted one gets a proper error answer; bigger ones are streamed with their last chunk held
# back until the digest is checked (a mismatch aborts the response).
VERIFY_BEFORE_SENDING = 8 * 1024 * 1024


@dataclass(frozen=True)
class SpooledUpload:
    """A received file: where it was spooled, and its size and SHA-256 computed on arrival."""

    path: Path
    size: int
    sha256: str
    filename: str | None


@dataclass(frozen=True)
class AttachmentView:
    id: str
    dossier_code: str
    component: str
    filename: str | None
    media_type: str
    size: int
    sha256: str
    sanitized: bool
    sanitized_sha256: str | None
    screening: dict[str, Any]
    retain_until: str | None
    legal_hold: bool
    created_at: str

    @classmethod
    def of(cls, a: Attachment) -> AttachmentView:
        return cls(
            id=a.id,
            dossier_code=a.dossier_code,
            component=a.component,
            filename=a.filename,
            media_type=a.media_type,
            size=a.size,
            sha256=a.sha256,
            sanitized=a.sanitized_key is not None,
            sanitized_sha256=a.sanitized_sha256,
            screening=a.screening,
            retain_until=api_time(a.retain_until) if a.retain_until else None,
            legal_hold=a.legal_hold,
            created_at=api_time(a.created_at),
        )


def crash_point(services: Services, step: str) -> None:
    """Fault injection for the crash test: the process is killed (SIGKILL, no clean-up) at
    ``step`` when ``SIGNING_SERVICE_CRASH_AT`` names it. Refused in production mode."""
    if services.settings.crash_at == step and not services.settings.is_production:
        log.warning("crash_at=%s: killing the process", step)
        os.kill(os.getpid(), signal.SIGKILL)


def storage_unavailable(services: Services) -> errors.ServiceError:
    return errors.StorageUnavailable(
        headers={"Retry-After": str(services.settings.retry_after_seconds)}
    )


def retention_days(services: Services, component: str) -> int:
    days = services.settings.attachment_components.get(component)
    if days is None:
        raise errors.InvalidComponent(
            "Thành phần hồ sơ không hợp lệ; chấp nhận: "
            + ", ".join(sorted(services.settings.attachment_components))
            + ".",
            details={"allowed": sorted(services.settings.attachment_components)},
        )
    return days


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise errors.InvalidIdempotencyKey()
    return key


def screening_policy(services: Services) -> ScreeningPolicy:
    allowed = services.settings.attachment_media_types
    return ScreeningPolicy(
        allowed=frozenset(allowed) if allowed is not None else DEFAULT_ALLOWED,
        pdf_active_content=services.settings.pdf_active_content,
    )


def audit_refusal(
    services: Services,
    agency: Agency,
    actor: str,
    code: str,
    details: dict[str, Any],
    action: str = "attachment.refused",
) -> None:
    """Every refused upload or access leaves an audit entry (never the file's content)."""
    try:
        with services.db.transaction() as session:
            audit.append(
                session,
                actor=actor,
                action=action,
                agency_code=agency.code,
                subject=details.get("dossier_code") or details.get("attachment_id"),
                details={"code": code, **details},
            )
    except Exception:
        log.exception("could not write the audit entry for %s", code)


def _quarantine(services: Services, agency: Agency, upload: SpooledUpload, found: str) -> Path:
    """Keep an infected upload for the security officer, outside the object store and out of
    every user's reach (mode 0600), with a sidecar describing it."""
    directory = services.settings.quarantine_path
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{upload.sha256[:16]}.bin"
    shutil.move(str(upload.path), target)
    target.chmod(0o600)
    target.with_suffix(".json").write_text(
        json.dumps(
            {
                "agency_code": agency.code,
                "filename": upload.filename,
                "sha256": upload.sha256,
                "size": upload.size,
                "signature": found,
            },
            ensure_ascii=False,
        )
    )
    return target


def _screen(services: Services, upload: SpooledUpload, sanitized_out: BinaryIO) -> ScreeningResult:
    with upload.path.open("rb") as f:
        return screen_file(
            f, upload.filename, screening_policy(services), sanitized_out=sanitized_out
        )


def _scan(
    services: Services, agency: Agency, upload: SpooledUpload, refuse: Callable[..., NoReturn]
) -> str:
    address = services.settings.clamd_address
    if not address:
        return "not-configured"
    try:
        with upload.path.open("rb") as f:
            result = scan_file(address, f, timeout=services.settings.clamd_timeout_seconds)
    except ClamdUnavailable as e:
        log.error("clamd unavailable: %s", e)
        refuse(
            errors.MalwareScanUnavailable(
                headers={"Retry-After": str(services.settings.retry_after_seconds)}
            )
        )
    if result.infected:
        where = _quarantine(services, agency, upload, result.signature or "")
        refuse(
            errors.MalwareFound(details={"signature": result.signature}),
            quarantined_as=where.name,
            signature=result.signature,
        )
    return "clean"


def _find_by_idempotency_key(services: Services, agency: Agency, key: str) -> Attachment | None:
    with services.db.transaction() as session:
        return session.scalars(
            select(Attachment).where(
                Attachment.agency_id == agency.id, Attachment.idempotency_key == key
            )
        ).first()


def _replay(
    existing: Attachment, upload: SpooledUpload, dossier_code: str, component: str
) -> AttachmentView:
    """The first record, when the same request is sent again: an ``Idempotency-Key`` is
    scoped to its agency *and* dossier (and component). The same key with another dossier,
    component or content is another request: 409, never the old record (issue 9: a key
    replayed for another dossier returned the old one)."""
    if (existing.sha256, existing.dossier_code, existing.component) != (
        upload.sha256,
        dossier_code,
        component,
    ):
        raise errors.IdempotencyConflict(details={"attachment_id": existing.id})
    return AttachmentView.of(existing)


class StagedObject:
    """An upload written to the store while it is still arriving (MinIO: a multipart upload
    fed through a pipe), so that storing costs no time after the last byte. Until its row is
    committed it is an orphan nobody can reach (random key, no record); a refused upload's
    object is deleted at once, and ``storage reconcile`` removes any a crash leaves. Retention
    is applied only once the file has been screened."""

    def __init__(self, services: Services, agency: Agency) -> None:
        self.services = services
        self.id = new_id()
        self.key = attachment_key(agency, self.id, datetime.now(UTC))
        self.pipe = ChunkPipe(max_chunks=4)  # ~1 MiB items
        self.info: ObjectInfo | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="staged-upload", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.info = self.services.store.put_stream(self.key, self.pipe, None)
        except BaseException as e:  # noqa: BLE001 - handed to the request thread
            self.error = e

    def put(self, chunks: list[bytes]) -> None:
        """Blocking put (call from a worker thread when :meth:`put_nowait` is refused)."""
        while not self.pipe.put(chunks, timeout=0.5):
            self._raise_if_failed()

    def put_nowait(self, chunks: list[bytes]) -> bool:
        self._raise_if_failed()
        return self.pipe.put_nowait(chunks)

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise storage_unavailable(self.services)

    def finish(self) -> ObjectInfo:
        while not self.pipe.close(timeout=0.5) and self._thread.is_alive():
            pass
        self._thread.join()
        if self.error is not None or self.info is None:
            log.warning("staged upload failed: %s", type(self.error).__name__)
            self.discard()
            raise storage_unavailable(self.services)
        return self.info

    def abort(self, error: BaseException) -> None:
        self.pipe.abort(error)
        self._thread.join()
        self.discard()

    def discard(self) -> None:
        _remove_objects(self.services, [self.key])


def attachment_key(agency: Agency, attachment_id: str, now: datetime) -> str:
    return f"attachments/{agency.code}/{now:%Y/%m}/{attachment_id}"


def store_attachment(
    services: Services,
    agency: Agency,
    *,
    dossier_code: str,
    component: str,
    upload: SpooledUpload,
    idempotency_key: str | None,
    actor: str,
    staged: StagedObject | None = None,
) -> tuple[AttachmentView, bool]:
    """Screen, store and record one upload. Returns the view and whether it was created
    (False: the same ``idempotency_key`` and content were sent before). The spooled file is
    the caller's to remove; a ``staged`` object (already written while receiving, already
    finished) is removed here unless the upload is accepted."""
    written: list[str] = [staged.key] if staged is not None else []
    try:
        return _store(
            services,
            agency,
            dossier_code=dossier_code,
            component=component,
            upload=upload,
            idempotency_key=idempotency_key,
            actor=actor,
            staged=staged,
            written=written,
        )
    except BaseException as e:
        # A connection lost during COMMIT leaves the outcome unknown: keep the objects (an
        # orphan is reconciled; removing an object its committed row names loses the upload,
        # and a replay with the same Idempotency-Key would then acknowledge a lost file).
        if not connection_lost(e):
            _remove_objects(services, written)
        raise


def _store(
    services: Services,
    agency: Agency,
    *,
    dossier_code: str,
    component: str,
    upload: SpooledUpload,
    idempotency_key: str | None,
    actor: str,
    staged: StagedObject | None,
    written: list[str],
) -> tuple[AttachmentView, bool]:
    crash_point(services, "received")
    # Refused input is recorded escaped and cut (a NUL would make PostgreSQL refuse the entry).
    base = {
        "dossier_code": printable(dossier_code),
        "component": printable(component),
        "filename": printable(upload.filename, MAX_FILENAME_CHARS) if upload.filename else None,
        "size": upload.size,
        "sha256": upload.sha256,
    }

    def refuse(error: errors.ServiceError, **extra: Any) -> NoReturn:
        audit_refusal(services, agency, actor, error.code, {**base, **extra})
        raise error

    try:
        check_dossier_code(dossier_code or "-", agency.code)
        days = retention_days(services, component)
        check_idempotency_key(idempotency_key)
        check_filename(upload.filename)
    except errors.ServiceError as e:
        refuse(e)
    if idempotency_key is not None:
        existing = _find_by_idempotency_key(services, agency, idempotency_key)
        if existing is not None:
            return _replay(existing, upload, dossier_code, component), False

    with tempfile.TemporaryFile(dir=upload.path.parent) as sanitized:
        result = _screen(services, upload, sanitized)
        if not result.accepted:
            assert result.code is not None
            refuse(
                errors.ScreeningRefused(
                    result.code,
                    MESSAGES[result.code],
                    details={"reason": result.detail} if result.detail else None,
                ),
                media_type=result.media_type,
                reason=result.detail,
            )
        assert result.media_type is not None
        malware = _scan(services, agency, upload, refuse)
        crash_point(services, "screened")

        now = datetime.now(UTC)
        attachment_id = staged.id if staged is not None else new_id()
        key = staged.key if staged is not None else attachment_key(agency, attachment_id, now)
        retain_until = now + timedelta(days=days) if days > 0 else None
        row = Attachment(
            id=attachment_id,
            agency_id=agency.id,
            dossier_code=dossier_code,
            component=component,
            filename=upload.filename,
            media_type=result.media_type,
            size=upload.size,
            sha256=upload.sha256,
            storage_key=key,
            screening={
                "checks": ["media_type", "extension", "polyglot", "pdf", "zip_bomb"],
                "active_content": result.active_content,
                "signed_pdf": result.signed_pdf,
                "malware_scan": malware,
            },
            retain_until=retain_until,
            legal_hold=False,
            idempotency_key=idempotency_key,
            created_by=actor,
            created_at=now,
        )
        try:
            if staged is not None:
                assert staged.info is not None
                info = staged.info
                if retain_until is not None:
                    services.store.set_retention(key, retain_until)
            else:
                with upload.path.open("rb") as f:
                    info = services.store.put_stream(key, f, upload.size, retain_until=retain_until)
                written.append(key)
            if info.sha256 != upload.sha256 or info.size != upload.size:
                raise errors.StorageIntegrity(
                    "Nội dung ghi vào kho lưu trữ khác với nội dung đã nhận."
                )
            if result.sanitized_written:
                size = sanitized.seek(0, os.SEEK_END)
                sanitized.seek(0)
                row.sanitized_key = f"{key}-sanitized"
                written.append(row.sanitized_key)
                clean = services.store.put_stream(
                    row.sanitized_key, sanitized, size, retain_until=retain_until
                )
                row.sanitized_sha256, row.sanitized_size = clean.sha256, clean.size
            crash_point(services, "object_written")
            with services.db.transaction() as session:
                session.add(row)
                session.flush()
                audit.append(
                    session,
                    actor=actor,
                    action="attachment.stored",
                    agency_code=agency.code,
                    subject=attachment_id,
                    details={
                        **base,
                        "media_type": row.media_type,
                        "sanitized_sha256": row.sanitized_sha256,
                        "active_content": result.active_content,
                        "malware_scan": malware,
                        "retain_until": api_time_or_none(retain_until),
                    },
                )
        except IntegrityError:
            if idempotency_key is not None:
                # Another request with the same key committed first.
                _remove_objects(services, written)
                written.clear()
                existing = _find_by_idempotency_key(services, agency, idempotency_key)
                if existing is not None:
                    return _replay(existing, upload, dossier_code, component), False
            raise
        except StorageUnavailableError:
            refuse(storage_unavailable(services))
        except errors.ServiceError as e:
            refuse(e)
    written.clear()  # committed: the objects are the row's now
    crash_point(services, "committed")
    return AttachmentView.of(row), True


def _remove_objects(services: Services, keys: list[str]) -> None:
    for key in keys:
        try:
            services.store.delete(key, bypass_retention=True)
        except Exception:  # noqa: BLE001 - storage reconcile will find it
            log.error("could not remove orphan object %s", key)


def list_attachments(
    services: Services, agency: Agency, dossier_code: str, actor: str
) -> list[AttachmentView]:
    try:
        check_dossier_code(dossier_code or "-", agency.code)
    except errors.ServiceError as e:
        audit_refusal(services, agency, actor, e.code, {"dossier_code": printable(dossier_code)})
        raise
    with services.db.transaction() as session:
        rows = session.scalars(
            select(Attachment)
            .where(Attachment.agency_id == agency.id, Attachment.dossier_code == dossier_code)
            .order_by(Attachment.created_at, Attachment.id)
        ).all()
    return [AttachmentView.of(r) for r in rows]


def get_attachment(
    services: Services, agency: Agency, attachment_id: str, actor: str
) -> Attachment:
    with services.db.transaction() as session:
        row = session.scalars(
            select(Attachment).where(
                Attachment.id == attachment_id, Attachment.agency_id == agency.id
            )
        ).first()
    if row is None:
        # Another agency's attachment is indistinguishable from a missing one, and the attempt
        # is recorded.
        audit_refusal(
            services,
            agency,
            actor,
            "ATTACHMENT_NOT_FOUND",
            {"attachment_id": printable(attachment_id)},
            action="attachment.not_found",
        )
        raise errors.AttachmentNotFound()
    return row


@dataclass
class Content:
    """An attachment's content, checked against its recorded SHA-256."""

    row: Attachment
    size: int
    sha256: str
    media_type: str
    filename: str
    chunks: Iterator[bytes]
    body: bytes | None = None  # set when read whole and already checked
    closers: list[Callable[[], None]] = field(default_factory=list)


def _verified(
    reader: ObjectReader, sha256: str, size: int, on_mismatch: Callable[[], None]
) -> Iterator[bytes]:
    digest = hashlib.sha256()
    seen = 0
    held: bytes | None = None
    try:
        for chunk in reader:
            if held is not None:
                yield held
            digest.update(chunk)
            seen += len(chunk)
            held = chunk
        if seen != size or digest.hexdigest() != sha256:
            on_mismatch()
            raise errors.StorageIntegrity()
        if held is not None:
            yield held
    finally:
        reader.close()


def variant(row: Attachment, sanitized: bool) -> tuple[str, str, int]:
    """(storage key, SHA-256, size) of the original or of its sanitized copy."""
    if not sanitized:
        return row.storage_key, row.sha256, row.size
    if row.sanitized_key is None or row.sanitized_sha256 is None or row.sanitized_size is None:
        raise errors.AttachmentNotFound("Tệp đính kèm này không có bản đã làm sạch.")
    return row.sanitized_key, row.sanitized_sha256, row.sanitized_size


def open_content(
    services: Services, agency: Agency, row: Attachment, *, sanitized: bool, actor: str
) -> Content:
    key, sha256, size = variant(row, sanitized)

    def corrupted(reason: str) -> None:
        log.error("attachment %s: stored object does not match its record (%s)", row.id, reason)
        audit_refusal(
            services,
            agency,
            actor,
            "STORAGE_INTEGRITY_ERROR",
            {"attachment_id": row.id, "reason": reason},
            action="attachment.integrity_error",
        )

    try:
        reader = services.store.open(key)
    except ObjectNotFound:
        corrupted("object missing")
        raise errors.StorageIntegrity("Không tìm thấy nội dung tệp trong kho lưu trữ.") from None
    except StorageUnavailableError:
        raise storage_unavailable(services) from None
    name = row.filename or f"{row.id}"
    content = Content(row, size, sha256, row.media_type, name, iter(()))
    if reader.size != size:
        reader.close()
        corrupted("size differs")
        raise errors.StorageIntegrity()
    checked = _verified(reader, sha256, size, lambda: corrupted("digest differs"))
    if size <= VERIFY_BEFORE_SENDING:
        try:
            content.body = b"".join(checked)
        except StorageUnavailableError:
            raise storage_unavailable(services) from None
    else:
        content.chunks = checked
    return content


def presigned_url(services: Services, row: Attachment, sanitized: bool) -> str | None:
    seconds = services.settings.presigned_download_seconds
    presign = getattr(services.store, "presigned_url", None)
    if seconds <= 0 or presign is None:
        return None
    key, _, _ = variant(row, sanitized)
    try:
        return str(presign(key, timedelta(seconds=seconds)))
    except StorageUnavailableError:
        raise storage_unavailable(services) from None


def set_legal_hold(
    services: Services, agency: Agency, attachment_id: str, on: bool, actor: str
) -> AttachmentView:
    row = get_attachment(services, agency, attachment_id, actor)
    try:
        for key in (row.storage_key, row.sanitized_key):
            if key is not None:
                services.store.set_legal_hold(key, on)
    except ObjectNotFound:
        raise errors.StorageIntegrity("Không tìm thấy nội dung tệp trong kho lưu trữ.") from None
    except StorageUnavailableError:
        raise storage_unavailable(services) from None
    with services.db.transaction() as session:
        stored = session.get(Attachment, row.id)
        assert stored is not None
        stored.legal_hold = on
        audit.append(
            session,
            actor=actor,
            action="attachment.legal_hold_on" if on else "attachment.legal_hold_off",
            agency_code=agency.code,
            subject=row.id,
            details={"dossier_code": row.dossier_code, "sha256": row.sha256},
        )
    row.legal_hold = on
    return AttachmentView.of(row)


def delete_attachment(services: Services, agency: Agency, attachment_id: str, actor: str) -> None:
    """Refused while the attachment is retained or held. The row goes first (with its audit
    entry), then the object: a failure in between leaves an orphan object, never a row without
    its content."""
    row = get_attachment(services, agency, attachment_id, actor)
    now = datetime.now(UTC)
    retain_until = aware_utc(row.retain_until) if row.retain_until is not None else None
    if row.legal_hold or (retain_until is not None and retain_until > now):
        audit_refusal(
            services,
            agency,
            actor,
            "ATTACHMENT_RETAINED",
            {"attachment_id": row.id, "dossier_code": row.dossier_code},
        )
        raise errors.AttachmentRetained(
            details={
                "retain_until": api_time_or_none(retain_until),
                "legal_hold": row.legal_hold,
            }
        )
    with services.db.transaction() as session:
        stored = session.get(Attachment, row.id)
        if stored is not None:
            session.delete(stored)
        audit.append(
            session,
            actor=actor,
            action="attachment.deleted",
            agency_code=agency.code,
            subject=row.id,
            details={"dossier_code": row.dossier_code, "sha256": row.sha256},
        )
    for key in (row.storage_key, row.sanitized_key):
        if key is None:
            continue
        try:
            services.store.delete(key)
        except ObjectLocked:
            # The store still holds it (retention longer than recorded): reconcile reports it.
            log.error("object %s is still locked in storage after its record was deleted", key)
        except StorageUnavailableError:
            log.error("could not delete object %s now; storage reconcile will", key)


@dataclass
class ReconcileReport:
    orphan_objects: list[str] = field(default_factory=list)
    removed_objects: list[str] = field(default_factory=list)
    held_objects: list[str] = field(default_factory=list)
    missing_objects: list[dict[str, str]] = field(default_factory=list)
    removed_records: list[str] = field(default_factory=list)
    removed_temporary: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _referenced(services: Services, keys: list[str] | None = None) -> set[str]:
    from signing_service.services.evidence import referenced_keys as referenced_evidence

    with services.db.transaction() as session:
        if keys is not None:
            found = set(
                session.scalars(select(Document.storage_key).where(Document.storage_key.in_(keys)))
            )
            found |= set(
                session.scalars(
                    select(Attachment.storage_key).where(Attachment.storage_key.in_(keys))
                )
            )
            found |= set(
                session.scalars(
                    select(Attachment.sanitized_key).where(Attachment.sanitized_key.in_(keys))
                )
            )
            # Seals and signatures that visible signatures show (issue 10).
            found |= set(
                session.scalars(
                    select(AppearanceImage.storage_key).where(AppearanceImage.storage_key.in_(keys))
                )
            )
            # Evidence kept per signature (issue 12): content-addressed objects under evidence/.
            found |= referenced_evidence(session, keys)
            return {k for k in found if k}
        refs = {k for k in session.scalars(select(Document.storage_key)) if k}
        refs |= set(session.scalars(select(AppearanceImage.storage_key)))
        refs |= referenced_evidence(session)
        for key, clean in session.execute(select(Attachment.storage_key, Attachment.sanitized_key)):
            refs.add(key)
            if clean:
                refs.add(clean)
        return refs


def reconcile(
    services: Services, *, min_age: timedelta, dry_run: bool = False, actor: str = "cli"
) -> ReconcileReport:
    """Find (and unless ``dry_run``, clean) what a crash can leave behind: objects no record
    points to, attachment records whose object is missing, and spooled or temporary files.
    Objects younger than ``min_age`` are left alone: they may belong to uploads in flight."""
    report = ReconcileReport(dry_run=dry_run)
    cutoff = datetime.now(UTC) - min_age
    referenced = _referenced(services)
    candidates = [
        obj.key
        for obj in services.store.list_info()
        if obj.key not in referenced and obj.modified <= cutoff
    ]
    # Re-read just before acting: an upload may have committed since the first look.
    still_orphans = set(candidates) - _referenced(services, candidates) if candidates else set()
    for key in sorted(still_orphans):
        report.orphan_objects.append(key)
        if dry_run:
            continue
        try:
            services.store.delete(key, bypass_retention=True)
            report.removed_objects.append(key)
        except ObjectLocked:
            report.held_objects.append(key)

    with services.db.transaction() as session:
        rows = session.scalars(select(Attachment).where(Attachment.created_at <= cutoff)).all()
    for row in rows:
        if services.store.exists(row.storage_key):
            continue
        report.missing_objects.append({"attachment_id": row.id, "key": row.storage_key})
        if dry_run:
            continue
        with services.db.transaction() as session:
            stored = session.get(Attachment, row.id)
            if stored is not None:
                session.delete(stored)
            audit.append(
                session,
                actor=actor,
                action="attachment.record_removed",
                agency_code=None,
                subject=row.id,
                details={
                    "reason": "object missing from storage",
                    "dossier_code": row.dossier_code,
                    "sha256": row.sha256,
                    "storage_key": row.storage_key,
                },
            )
        report.removed_records.append(row.id)

    temporary: list[Path] = []
    spool = services.settings.upload_tmp_path
    if spool.is_dir():
        temporary += [
            p
            for p in spool.iterdir()
            if p.is_file() and datetime.fromtimestamp(p.stat().st_mtime, UTC) <= cutoff
        ]
    list_temporary = getattr(services.store, "list_temporary", None)
    if list_temporary is not None:
        temporary += list(list_temporary(cutoff))
    for path in temporary:
        report.removed_temporary.append(str(path))
        if not dry_run:
            path.unlink(missing_ok=True)

    if not dry_run:
        with services.db.transaction() as session:
            audit.append(
                session,
                actor=actor,
                action="storage.reconciled",
                details={
                    "removed_objects": len(report.removed_objects),
                    "held_objects": len(report.held_objects),
                    "removed_records": len(report.removed_records),
                    "removed_temporary": len(report.removed_temporary),
                },
            )
    return report
