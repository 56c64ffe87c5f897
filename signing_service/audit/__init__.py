"""The audit log: append-only and hash-chained, written in the caller's transaction.

Each entry's hash covers its content and the previous entry's hash, and the one-row
``audit_head`` records the newest sequence number and hash. ``verify`` therefore detects an
edited entry (its hash no longer matches), a deleted or reordered entry (a broken link or a gap
in the sequence), and deleted newest entries (the head points past the end). Entries never
contain document contents or secrets: callers pass identifiers and digests only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from signing_service.store.models import AuditEntry, AuditHead

GENESIS = "0" * 64
FORBIDDEN_DETAIL_KEYS = frozenset(
    {"content", "data", "pdf", "secret", "password", "passphrase", "pin", "api_key", "key"}
)


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def entry_hash(
    seq: int,
    at: str,
    actor: str,
    agency_code: str | None,
    action: str,
    subject: str | None,
    details: str,
    prev_hash: str,
) -> str:
    body = _canonical(
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "agency_code": agency_code,
            "action": action,
            "subject": subject,
            "details": details,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(body).hexdigest()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    agency_code: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry in ``session``'s transaction (committed or rolled back with it)."""
    details = details or {}
    leaked = FORBIDDEN_DETAIL_KEYS.intersection(k.lower() for k in details)
    if leaked:
        raise ValueError(f"audit details must not carry {sorted(leaked)}")
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
    seq = head.seq + 1
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    details_json = _canonical(details).decode()
    digest = entry_hash(seq, at, actor, agency_code, action, subject, details_json, head.hash)
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        agency_code=agency_code,
        action=action,
        subject=subject,
        details=details_json,
        prev_hash=head.hash,
        hash=digest,
    )
    session.add(entry)
    head.seq = seq
    head.hash = digest
    session.flush()
    return entry


@dataclass
class ChainReport:
    ok: bool
    entries: int
    problems: list[str]


def verify(session: Session, batch: int = 5000) -> ChainReport:
    problems: list[str] = []
    expected_prev = GENESIS
    expected_seq = 1
    count = 0
    last_seq = 0
    stmt = select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=batch)
    for entry in session.execute(stmt).scalars():
        count += 1
        if entry.seq != expected_seq:
            problems.append(
                f"entry {expected_seq}..{entry.seq - 1} missing (gap before {entry.seq})"
            )
        if entry.prev_hash != expected_prev:
            problems.append(f"entry {entry.seq}: link to the previous entry is broken")
        recomputed = entry_hash(
            entry.seq,
            entry.at,
            entry.actor,
            entry.agency_code,
            entry.action,
            entry.subject,
            entry.details,
            entry.prev_hash,
        )
        if recomputed != entry.hash:
            problems.append(f"entry {entry.seq}: content does not match its hash (edited)")
        expected_prev = entry.hash
        expected_seq = entry.seq + 1
        last_seq = entry.seq
    head = session.get(AuditHead, 1)
    if head is not None:
        if head.seq != last_seq:
            problems.append(f"head says {head.seq} entries, log ends at {last_seq} (truncated)")
        elif head.hash != expected_prev:
            problems.append("head hash differs from the last entry's hash")
    elif count:
        problems.append("audit head is missing")
    return ChainReport(ok=not problems, entries=count, problems=problems)
