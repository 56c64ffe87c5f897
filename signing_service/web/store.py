"""Verification results kept for a short while, so the page's "Tải báo cáo PDF" link can
give the sealed report without the citizen uploading the file again (issue 11; fixes F2, F3,
F12 of the red team).

Kept in the metadata database (table ``report_links``), not in process memory: with
``serve --workers 2`` the link's GET may reach another worker than the upload did (F12). Each
link keeps the result shown (the report JSON: public data — verdict, certificate names, codes,
the registry's public metadata —, the QR comparison's public id, the uploaded file's name),
never the file's bytes; and, once rendered, the sealed PDF: the report is typeset, sealed and
timestamped once per link, later GETs serve the stored bytes (F2: a link cannot mint
unlimited TSA timestamps).

Under an unguessable token (192 random bits; the table holds only its SHA-256), for
``ttl_seconds`` (15 minutes), bounded in count and in bytes. A live link is never evicted to
make room (F3: a flood of uploads must not take another citizen's link): when the store is
full, :meth:`ReportStore.put` answers ``None`` and the page shows no download button, with a
sentence saying why. Expired rows are deleted on the way (each ``put``). Across worker
processes the bounds are checked without a table lock: concurrent ``put`` calls may pass them
by at most one row per process.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update

from signing_service.store.db import Database
from signing_service.store.models import ReportLink

TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
MAX_ITEMS = 2000
MAX_BYTES = 256 * 1024 * 1024
TTL_SECONDS = 900


@dataclass(frozen=True)
class StoredReport:
    """A live link's data: ``entry`` (the JSON bytes ``put`` was given; ``None`` when read
    with its PDF only), ``file_name`` and ``pdf`` (the sealed report once rendered, else
    ``None``)."""

    entry: bytes | None
    file_name: str
    pdf: bytes | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ReportStore:
    """Report links in the database ``db``: at most ``max_items`` live links and ``max_bytes``
    bytes (entries and PDFs) in all, each for ``ttl_seconds``. Safe from any thread and any
    worker process (each call is one transaction)."""

    def __init__(
        self,
        db: Database,
        *,
        max_items: int = MAX_ITEMS,
        max_bytes: int = MAX_BYTES,
        ttl_seconds: int = TTL_SECONDS,
    ) -> None:
        self.db = db
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.ttl = ttl_seconds

    def put(self, entry: bytes, file_name: str = "bao-cao-xac-minh.pdf") -> str | None:
        """Keep ``entry`` (bytes) and the report's ``file_name`` (at most 64 characters); its
        token (32 URL-safe characters), or ``None`` when the store is full (count or bytes) or
        ``entry`` alone is larger than it. Deletes expired links."""
        if len(entry) > self.max_bytes:
            return None
        token = secrets.token_urlsafe(24)
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            session.execute(delete(ReportLink).where(ReportLink.expires_at <= now))
            count, held = session.execute(
                select(func.count(), func.coalesce(func.sum(ReportLink.size), 0))
            ).one()
            if count >= self.max_items or held + len(entry) > self.max_bytes:
                return None
            session.add(
                ReportLink(
                    token_sha256=_digest(token),
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.ttl),
                    entry=entry,
                    file_name=file_name[:64],
                    pdf=None,
                    size=len(entry),
                )
            )
        return token

    def get(self, token: str) -> StoredReport | None:
        """The link ``token``'s data; ``None`` when unknown, malformed or expired. Once the PDF
        is stored, the entry is not read (``entry`` is ``None``): a GET reads what it serves."""
        if not TOKEN.fullmatch(token):
            return None
        where = (
            ReportLink.token_sha256 == _digest(token),
            ReportLink.expires_at > datetime.now(UTC),
        )
        with self.db.transaction() as session:
            row = session.execute(
                select(ReportLink.file_name, ReportLink.pdf).where(*where)
            ).first()
            if row is None:
                return None
            if row[1] is not None:
                return StoredReport(entry=None, file_name=row[0], pdf=row[1])
            entry = session.execute(select(ReportLink.entry).where(*where)).scalar()
        if entry is None:
            return None
        return StoredReport(entry=entry, file_name=row[0], pdf=None)

    def keep_pdf(self, token: str, pdf: bytes) -> bytes:
        """Store the sealed ``pdf`` of link ``token`` unless one is stored already (another
        worker rendered it first): the PDF every later GET serves. When it does not fit the
        byte bound it is not stored (the next GET renders again, in the bounded lane)."""
        digest = _digest(token)
        with self.db.transaction() as session:
            held = session.execute(select(func.coalesce(func.sum(ReportLink.size), 0))).scalar()
            if int(held or 0) + len(pdf) <= self.max_bytes:
                session.execute(
                    update(ReportLink)
                    .where(ReportLink.token_sha256 == digest, ReportLink.pdf.is_(None))
                    .values(pdf=pdf, size=ReportLink.size + len(pdf))
                )
            stored = session.execute(
                select(ReportLink.pdf).where(ReportLink.token_sha256 == digest)
            ).scalar()
        return stored or pdf

    def __len__(self) -> int:
        with self.db.transaction() as session:
            return int(
                session.execute(
                    select(func.count()).where(ReportLink.expires_at > datetime.now(UTC))
                ).scalar()
                or 0
            )

    @property
    def size(self) -> int:
        """Bytes held (live and not yet deleted links)."""
        with self.db.transaction() as session:
            return int(
                session.execute(select(func.coalesce(func.sum(ReportLink.size), 0))).scalar() or 0
            )
