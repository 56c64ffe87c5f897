from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from signing_service.services.container import Services
from signing_service.store.models import AuditEntry, Document, Signature


@dataclass(frozen=True)
class Snapshot:
    documents: int
    signatures: int
    objects: int
    audit: int


def snapshot(services: Services) -> Snapshot:
    with services.db.transaction() as session:
        docs = session.scalar(select(func.count()).select_from(Document)) or 0
        sigs = session.scalar(select(func.count()).select_from(Signature)) or 0
        audit = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    return Snapshot(docs, sigs, len(list(services.store.list())), audit)


def assert_nothing_written(before: Snapshot, services: Services) -> None:
    after = snapshot(services)
    assert (after.documents, after.signatures, after.objects) == (
        before.documents,
        before.signatures,
        before.objects,
    ), (before, after)
