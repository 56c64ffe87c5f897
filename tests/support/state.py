from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from signing_service.services.container import Services
from signing_service.store.models import Attachment, AuditEntry, Document, Signature


@dataclass(frozen=True)
class Snapshot:
    documents: int
    signatures: int
    attachments: int
    objects: int
    spooled: int
    audit: int


def snapshot(services: Services) -> Snapshot:
    with services.db.transaction() as session:
        docs = session.scalar(select(func.count()).select_from(Document)) or 0
        sigs = session.scalar(select(func.count()).select_from(Signature)) or 0
        atts = session.scalar(select(func.count()).select_from(Attachment)) or 0
        audit = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    spool = services.settings.upload_tmp_path
    spooled = len(list(spool.iterdir())) if spool.is_dir() else 0
    return Snapshot(docs, sigs, atts, len(list(services.store.list())), spooled, audit)


def assert_nothing_written(before: Snapshot, services: Services) -> None:
    after = snapshot(services)
    assert (
        after.documents,
        after.signatures,
        after.attachments,
        after.objects,
        after.spooled,
    ) == (
        before.documents,
        before.signatures,
        before.attachments,
        before.objects,
        before.spooled,
    ), (before, after)
