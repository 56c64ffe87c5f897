"""The audit log: append-only, hash-chained and keyed, written in the caller's transaction.

Each entry carries two chains:

- ``hash = SHA-256(canonical(entry, prev_hash))``: anyone can recompute it, so it detects
  accidents and lets a reader check the log without the secret, but an attacker who can write
  the database simply recomputes it after an edit;
- ``mac = HMAC-SHA-256(K, canonical(entry, hash, previous entry's mac))`` with a key ``K``
  derived from a secret the database does not hold (:mod:`.key`). Without the secret an
  edited, inserted, deleted (and renumbered) or reordered entry cannot be given a valid MAC,
  and every entry's MAC covers its sequence number and its predecessor's MAC.

The one-row ``audit_head`` records the newest sequence number, hash and MAC; the database
alone cannot prove that its newest entries were not cut off (the attacker rewrites the head
too), so the head is periodically sealed with an RFC 3161 timestamp kept outside the database
(:mod:`.seals`), and ``audit verify`` reports a log shorter than its last seal.

Entries never contain document contents or secrets: callers pass identifiers and digests only.
The key reaches :func:`append` through the session (``session.info["audit_key"]``, set by
:class:`signing_service.store.db.Database`), so callers need not pass it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from signing_service.audit.key import AuditKey
from signing_service.store.models import AuditEntry, AuditHead

GENESIS = "0" * 64
FORBIDDEN_DETAIL_KEYS = frozenset(
    {"content", "data", "pdf", "secret", "password", "passphrase", "pin", "api_key", "key"}
)
# Domain separation: a MAC over an audit entry is never valid as anything else.
_MAC_DOMAIN = b"signing-service/audit-entry/v1\n"
# At most this many problems are kept (a wholesale rewrite makes every entry a problem).
MAX_PROBLEMS = 200

__all__ = [
    "FORBIDDEN_DETAIL_KEYS",
    "GENESIS",
    "AuditKey",
    "AuditKeyMissing",
    "AuditProblem",
    "ChainReport",
    "append",
    "entry_hash",
    "entry_mac",
    "key_chain",
    "row_mac",
    "session_key",
    "verify",
]


class AuditNotKeyed(RuntimeError):
    """The log has no MAC chain although it was keyed before (its keyed marker exists outside
    the database), or an entry was about to be appended to an unkeyed log: refused, because
    keying it now would MAC whatever someone with write access to the database left in it."""


class AuditKeyMissing(RuntimeError):
    """An audit entry was about to be written by a session without the audit key (a
    :class:`Database` built without ``audit_key``): refusing beats writing an unkeyed entry."""


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
    """The plain chain: SHA-256 (hex) of the entry's canonical JSON with ``prev_hash``."""
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


def entry_mac(
    key: AuditKey,
    *,
    seq: int,
    at: str,
    actor: str,
    agency_code: str | None,
    action: str,
    subject: str | None,
    details: str,
    prev_hash: str,
    hash: str,
    prev_mac: str,
) -> str:
    """The keyed chain: HMAC-SHA-256 (hex) with ``key`` of the entry's canonical JSON, its
    plain hash and the previous entry's MAC (:data:`GENESIS` before the first)."""
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
            "hash": hash,
            "prev_mac": prev_mac,
        }
    )
    return key.mac(_MAC_DOMAIN + body)


def row_mac(key: AuditKey, row: Any, prev_mac: str) -> str:
    """The MAC :func:`entry_mac` gives a stored :class:`AuditEntry` ``row`` whose previous
    entry's MAC is ``prev_mac`` (:data:`GENESIS` before the first): equal to ``row.mac`` when
    the entry is authentic."""
    return entry_mac(
        key,
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        agency_code=row.agency_code,
        action=row.action,
        subject=row.subject,
        details=row.details,
        prev_hash=row.prev_hash,
        hash=row.hash,
        prev_mac=prev_mac,
    )


def _row_hash(row: Any) -> str:
    return entry_hash(
        row.seq,
        row.at,
        row.actor,
        row.agency_code,
        row.action,
        row.subject,
        row.details,
        row.prev_hash,
    )


def session_key(session: Session) -> AuditKey:
    """The audit key the session's :class:`Database` carries, or :class:`AuditKeyMissing`."""
    key = session.info.get("audit_key")
    if not isinstance(key, AuditKey):
        raise AuditKeyMissing("this database session carries no audit key")
    return key


def _locked_head(session: Session) -> AuditHead | None:
    return session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one_or_none()


_COLUMNS = (
    AuditEntry.seq,
    AuditEntry.at,
    AuditEntry.actor,
    AuditEntry.agency_code,
    AuditEntry.action,
    AuditEntry.subject,
    AuditEntry.details,
    AuditEntry.prev_hash,
    AuditEntry.hash,
    AuditEntry.mac,
)


def _rows(session: Session, after: int = 0, batch: int = 5000) -> Iterable[Any]:
    """Entries with ``seq > after`` in order, as plain rows (not ORM objects), in batches."""
    last = after
    while True:
        rows = session.execute(
            select(*_COLUMNS).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def keyed_marker(seal_dir: Path) -> Path:
    """The file, beside the seals and outside the database, saying this log is keyed."""
    return seal_dir / "keyed.json"


def mark_keyed(session: Session, seal_dir: Path) -> None:
    """Record outside the database that this log is keyed (idempotent; the directory is made
    private). A log whose MACs later vanish is then refused, not keyed again."""
    head = _locked_head(session)
    marker = keyed_marker(seal_dir)
    if head is None and marker.exists():
        # The marker says this deployment's log was keyed; a database that holds signatures
        # but no head has lost the whole log (red team 23b, R23B-6: deleted, the next start
        # began a new chain from genesis and `audit verify` called it intact). A database
        # without signatures (a new one, e.g. moving to PostgreSQL) starts its own log.
        from sqlalchemy import func

        from signing_service.store.models import Signature

        signed = int(session.scalar(select(func.count()).select_from(Signature)) or 0)
        if signed:
            raise AuditNotKeyed(
                f"nhật ký kiểm toán đã từng được khóa (tệp {marker}) nhưng cơ sở dữ liệu không "
                f"còn đầu chuỗi nhật ký, trong khi vẫn giữ {signed} chữ ký: nhật ký của chúng đã "
                "bị xóa. Khôi phục cơ sở dữ liệu từ bản sao lưu (README, mục «Khi nhật ký kiểm "
                "toán bị từ chối»)"
            )
    if head is None:
        # A new log: its head exists from the start, keyed from its first entry.
        head = AuditHead(id=1, seq=0, hash=GENESIS, mac=GENESIS, keyed_from=1)
        session.add(head)
        session.flush()
    if head.mac is None or marker.exists():
        return
    seal_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"keyed_from": head.keyed_from, "marked_at": datetime.now(UTC).isoformat()})
    )
    tmp.chmod(0o600)
    tmp.replace(marker)


KEYING_REVISION = 5
"""Migration 0005 added the MAC columns: a log is keyed after the fact only by the run whose
migration crossed it."""


def _before_keying(schema_before: str | None) -> bool:
    try:
        return schema_before is not None and int(schema_before) < KEYING_REVISION
    except ValueError:
        return False


def check_key(
    session: Session, key: AuditKey, sealed_with: Callable[[], str | None] | None = None
) -> None:
    """Raise :class:`AuditNotKeyed` when ``key`` is not the key the log's newest entry was MACed
    with (one MAC computed: the newest entry's, from the one before it). Why (red team 23b,
    R23B-7): a replaced or regenerated key file went unnoticed, and entries MACed with it
    were chained onto the old key's, so that no key verified the log any more.
    ``sealed_with``: gives the key id the newest seal names, said in the refusal (read only
    then)."""
    head = _locked_head(session)
    if head is None or head.mac is None or head.seq < 1:
        return
    newest = (
        select(AuditEntry)
        .where(AuditEntry.seq <= head.seq)
        .order_by(AuditEntry.seq.desc())
        .limit(2)
    )
    rows = session.scalars(newest).all()
    if not rows or rows[0].seq != head.seq or rows[0].mac is None:
        return  # a damaged log: `audit verify` reports it
    if head.seq == 1:
        previous = GENESIS
    elif len(rows) > 1 and rows[1].seq == head.seq - 1:
        previous = rows[1].mac or GENESIS  # as verify() chains it
    else:
        return  # the entry before is missing: `audit verify` reports it
    if row_mac(key, rows[0], previous) != rows[0].mac:
        sealed = sealed_with() if sealed_with is not None else None
        expected = f" (mã khóa {sealed})" if sealed else ""
        raise AuditNotKeyed(
            f"khóa nhật ký kiểm toán đang cấu hình (mã khóa {key.key_id}) không phải khóa đã ký "
            f"bản ghi mới nhất ({head.seq}): khóa đã bị thay hoặc tạo lại. Ghi tiếp bằng khóa "
            "này sẽ làm hỏng chuỗi. Hãy cấu hình lại đúng khóa cũ" + expected + " qua "
            "SIGNING_SERVICE_AUDIT_KEY hoặc SIGNING_SERVICE_AUDIT_KEY_FILE (ở chế độ phát triển: "
            "tệp var/audit-dev.key, khôi phục từ bản sao lưu của thư mục dữ liệu). Nếu khóa cũ đã "
            "mất, nhật ký cũ không còn kiểm chứng được: xem README, mục «Khi nhật ký kiểm toán bị "
            "từ chối»"
        )


def key_chain(
    session: Session,
    key: AuditKey | None = None,
    seal_dir: Path | None = None,
    *,
    schema_before: str | None = None,
    force: bool = False,
) -> int | None:
    """Key a chain that predates keying (migration 0005), once; None when nothing to do.

    Only when this run's migration crossed 0005 (``schema_before``: the schema revision before
    it, below 0005) or the operator asks for it (``force``: `signing-service migrate
    --key-audit-log`, recorded in the ``audit.keyed`` entry). A log already past 0005 whose
    MACs are gone was keyed and stripped: keying it again laundered an edit made meanwhile,
    once the marker file beside the seals was deleted too (red team 23b, R23B-4); it raises
    :class:`AuditNotKeyed`.

    MACs every existing entry in order (the MAC chain starts at :data:`GENESIS`), records in
    ``audit_head.keyed_from`` the first entry that will be MACed when appended, and appends an
    ``audit.keyed`` entry saying how many entries were keyed after the fact and whether their
    plain hash chain was intact at that moment (keying does not launder an earlier edit: the
    plain chain keeps being checked, so such an edit stays reported). Returns the number of
    entries keyed. Runs in the caller's transaction, holding the head's lock."""
    key = key or session_key(session)
    head = _locked_head(session)
    if head is None or head.mac is not None:
        return None
    if seal_dir is not None and (
        keyed_marker(seal_dir).exists() or any(seal_dir.glob("seal-*.json"))
    ):
        # Keyed before (or sealed, which needs a keyed log): the MACs were removed from the
        # database. Keying again would launder every edit made meanwhile (red team, issue 9).
        raise AuditNotKeyed(
            "nhật ký kiểm toán đã từng được khóa (có tệp đánh dấu hoặc niêm phong trong "
            f"{seal_dir}) nhưng nay không còn MAC trong cơ sở dữ liệu: có thể đã bị sửa; "
            "chạy `signing-service audit verify` và khôi phục cơ sở dữ liệu từ bản sao lưu"
        )
    if not force and not _before_keying(schema_before):
        raise AuditNotKeyed(
            "nhật ký kiểm toán không có MAC trong khi lược đồ cơ sở dữ liệu đã ở phiên bản "
            f"{schema_before or '?'} (từ 0005 trở đi mọi bản ghi đều có MAC): các MAC có thể đã "
            "bị xóa để che một chỉnh sửa; chạy `signing-service audit verify` và khôi phục từ "
            "bản sao lưu. Chỉ khi chắc chắn nhật ký này chưa từng được khóa (nâng cấp lên 0005 "
            "mà chưa có khóa kiểm toán), chạy `signing-service migrate --key-audit-log` (việc "
            "này được ghi vào nhật ký)"
        )
    prev_mac, prev_hash, expected, intact, keyed = GENESIS, GENESIS, 1, True, 0
    pending: list[dict[str, Any]] = []
    for row in _rows(session):
        if row.seq != expected or row.prev_hash != prev_hash or _row_hash(row) != row.hash:
            intact = False
        mac = row_mac(key, row, prev_mac)
        pending.append({"seq": row.seq, "mac": mac})
        if len(pending) >= 5000:
            session.execute(update(AuditEntry), pending)
            pending = []
        prev_mac, prev_hash, expected, keyed = mac, row.hash, row.seq + 1, keyed + 1
    if pending:
        session.execute(update(AuditEntry), pending)
    if head.seq != expected - 1 or head.hash != prev_hash:
        intact = False
    head.mac = prev_mac
    head.keyed_from = head.seq + 1
    session.flush()
    append(
        session,
        actor="system",
        action="audit.keyed",
        details={
            "entries_keyed_after_the_fact": keyed,
            "plain_chain_intact": intact,
            "key_id": key.key_id,
            "schema_before": schema_before,
            "forced_by_operator": force,
        },
    )
    return keyed


# Table-level statements, built once: the ORM-enabled forms cost 2-3 times the CPU per
# execution (measured: INSERT 61 -> 19 us, UPDATE 159 -> 68 us, SELECT 80 -> 51 us).
_HEAD_TABLE = AuditHead.__table__
_HEAD_LOCKED = (
    select(_HEAD_TABLE.c.seq, _HEAD_TABLE.c.hash, _HEAD_TABLE.c.mac)
    .where(_HEAD_TABLE.c.id == 1)
    .with_for_update()
)
_HEAD_UPDATE = _HEAD_TABLE.update().where(_HEAD_TABLE.c.id == 1)
_ENTRY_INSERT = AuditEntry.__table__.insert()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    agency_code: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append an entry in ``session``'s transaction (committed or rolled back with it).

    Holds the head's row lock (SELECT … FOR UPDATE; SQLite: the write lock of BEGIN
    IMMEDIATE) until the transaction ends, so concurrent transactions extend one chain.
    Raises ``ValueError`` when ``details`` names a secret or content field, and
    :class:`AuditKeyMissing` when the session carries no audit key."""
    details = details or {}
    leaked = FORBIDDEN_DETAIL_KEYS.intersection(k.lower() for k in details)
    if leaked:
        raise ValueError(f"audit details must not carry {sorted(leaked)}")
    key = session_key(session)
    # The head's three columns under its lock, and one INSERT and one UPDATE below: plain
    # statements rather than the unit of work (its flush of two objects was most of an
    # entry's ~1 ms of CPU). The chain is the same: the entry's hash and MAC follow the
    # head's, read under the lock, and the head moves to them in the same transaction.
    head = session.execute(_HEAD_LOCKED).first()
    if head is None:
        session.add(AuditHead(id=1, seq=0, hash=GENESIS, mac=GENESIS, keyed_from=1))
        session.flush()
        head_seq, head_hash, head_mac = 0, GENESIS, GENESIS
    else:
        head_seq, head_hash, head_mac = head.seq, head.hash, head.mac
    if head_mac is None:
        # Keyed only by the operator's start-up or `migrate` (key_chain with the seal
        # directory, which refuses a log that was keyed before): never here, where it would MAC
        # whatever the database holds now.
        raise AuditNotKeyed(
            "nhật ký kiểm toán chưa được khóa: chạy `signing-service migrate` với khóa nhật ký"
        )
    seq = head_seq + 1
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    details_json = _canonical(details).decode()
    digest = entry_hash(seq, at, actor, agency_code, action, subject, details_json, head_hash)
    mac = entry_mac(
        key,
        seq=seq,
        at=at,
        actor=actor,
        agency_code=agency_code,
        action=action,
        subject=subject,
        details=details_json,
        prev_hash=head_hash,
        hash=digest,
        prev_mac=head_mac,
    )
    session.execute(
        _ENTRY_INSERT,
        [
            {
                "seq": seq,
                "at": at,
                "actor": actor,
                "agency_code": agency_code,
                "action": action,
                "subject": subject,
                "details": details_json,
                "prev_hash": head_hash,
                "hash": digest,
                "mac": mac,
            }
        ],
    )
    session.execute(_HEAD_UPDATE, {"seq": seq, "hash": digest, "mac": mac})
    # A head object this session holds (key_chain's) reads the new values when next used.
    for obj in session.identity_map.values():
        if isinstance(obj, AuditHead):
            session.expire(obj)


@dataclass(frozen=True)
class AuditProblem:
    """One finding of :func:`verify`: a stable ``code``, a Vietnamese ``message`` and the
    entry (``seq``) it concerns, if one."""

    code: str
    message: str
    seq: int | None = None

    def __str__(self) -> str:
        return self.message


@dataclass
class ChainReport:
    """What :func:`verify` found. ``ok``: no problem. ``entries``: entries read; ``last_seq``:
    the newest one's number; ``keyed_from``: first entry MACed when appended (earlier ones
    were keyed after the upgrade to 0005); ``problems``: at most :data:`MAX_PROBLEMS`, with
    ``more_problems`` counting the rest; ``warnings``: not failures (e.g. no seal yet)."""

    ok: bool
    entries: int
    problems: list[AuditProblem]
    last_seq: int = 0
    keyed_from: int | None = None
    more_problems: int = 0
    warnings: list[str] = field(default_factory=list)
    # seq -> (hash, mac) of the entries at the positions asked for (seal heads)
    positions: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    # Filled by signing_service.audit.seals.verify_log.
    seals: int = 0
    last_sealed_seq: int | None = None
    last_sealed_at: str | None = None

    def add(self, problem: AuditProblem) -> None:
        self.ok = False
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.more_problems += 1

    def codes(self) -> set[str]:
        return {p.code for p in self.problems}


def verify(
    session: Session,
    key: AuditKey | None = None,
    *,
    positions: Iterable[int] = (),
    since: tuple[int, str, str] | None = None,
    batch: int = 5000,
) -> ChainReport:
    """Check the whole log: sequence, plain hash chain, MAC chain and head.

    ``key``: the audit key (default: the session's). ``positions``: sequence numbers whose
    (hash, mac) to report in ``ChainReport.positions`` (the seals' heads, checked by
    :func:`signing_service.audit.seals.verify_log`). ``since``: (seq, hash, mac) of an entry
    already vouched for (a seal's head): only the entries after it are checked, chained to
    it. Codes: ``ENTRY_MISSING``, ``LINK_BROKEN``, ``HASH_MISMATCH``, ``MAC_MISSING``,
    ``MAC_MISMATCH``, ``HEAD_MISSING``, ``HEAD_MISMATCH``, ``TRUNCATED``, ``NOT_KEYED`` (a log
    from before 0005 not keyed yet: MACs are not checked). Reads in batches; never raises for
    a damaged log."""
    key = key or session_key(session)
    wanted = set(positions)
    report = ChainReport(ok=True, entries=0, problems=[])
    head = session.get(AuditHead, 1)
    keyed = head is None or head.mac is not None
    if not keyed:
        report.add(
            AuditProblem(
                "NOT_KEYED",
                "Nhật ký không có MAC. Nếu đây là nhật ký từ trước bản nâng cấp 0005 chưa "
                "được khóa: chạy `signing-service migrate` với khóa nhật ký đã cấu hình (lần "
                "nâng cấp qua 0005 sẽ khóa nó). Nếu không (cơ sở dữ liệu đã ở 0005 trở lên, "
                "`migrate` từ chối): MAC đã bị xóa, khôi phục cơ sở dữ liệu từ bản sao lưu.",
            )
        )
    expected_prev, expected_mac, expected_seq = GENESIS, GENESIS, 1
    if since is not None:
        report.last_seq = since[0]
        expected_seq, expected_prev, expected_mac = since[0] + 1, since[1], since[2]
    for row in _rows(session, after=expected_seq - 1, batch=batch):
        report.entries += 1
        seq = row.seq
        if seq != expected_seq:
            report.add(
                AuditProblem(
                    "ENTRY_MISSING",
                    f"Thiếu bản ghi {expected_seq}–{seq - 1} (ngay trước bản ghi {seq}): "
                    "bản ghi đã bị xóa.",
                    expected_seq,
                )
            )
        if row.prev_hash != expected_prev:
            report.add(
                AuditProblem(
                    "LINK_BROKEN",
                    f"Bản ghi {seq}: liên kết băm tới bản ghi trước bị đứt (bản ghi bị xóa, "
                    "chèn hoặc đổi thứ tự).",
                    seq,
                )
            )
        if _row_hash(row) != row.hash:
            report.add(
                AuditProblem(
                    "HASH_MISMATCH",
                    f"Bản ghi {seq}: nội dung không khớp mã băm (bản ghi đã bị sửa).",
                    seq,
                )
            )
        if keyed and row.mac is None:
            report.add(
                AuditProblem(
                    "MAC_MISSING", f"Bản ghi {seq}: không có mã xác thực (MAC) của khóa.", seq
                )
            )
        elif keyed and row_mac(key, row, expected_mac) != row.mac:
            report.add(
                AuditProblem(
                    "MAC_MISMATCH",
                    f"Bản ghi {seq}: mã xác thực (MAC) không khớp — bản ghi hoặc bản ghi liền "
                    "trước đã bị sửa, chèn, xóa hay đổi thứ tự (kể cả khi mã băm thường đã được "
                    "tính lại), hoặc khóa nhật ký không đúng.",
                    seq,
                )
            )
        if seq in wanted:
            report.positions[seq] = (row.hash, row.mac)
        expected_prev, expected_mac = row.hash, row.mac or GENESIS
        expected_seq = seq + 1
        report.last_seq = seq
    if head is None:
        if report.entries:
            report.add(AuditProblem("HEAD_MISSING", "Mất bản ghi đầu chuỗi (audit_head)."))
        return report
    report.keyed_from = head.keyed_from
    if head.seq > report.last_seq:
        report.add(
            AuditProblem(
                "TRUNCATED",
                f"Đầu chuỗi ghi {head.seq} bản ghi nhưng nhật ký chỉ còn đến bản ghi "
                f"{report.last_seq}: phần cuối đã bị cắt.",
            )
        )
    elif (
        head.seq != report.last_seq
        or head.hash != expected_prev
        or (keyed and head.mac != expected_mac)
    ):
        report.add(
            AuditProblem(
                "HEAD_MISMATCH",
                "Đầu chuỗi (audit_head) không khớp bản ghi cuối cùng của nhật ký.",
            )
        )
    return report


def problems_summary(problems: Iterable[AuditProblem], more: int = 0) -> list[str]:
    """Vietnamese lines for people, the overflow counted."""
    lines = [p.message for p in problems]
    if more:
        lines.append(f"… và {more} vấn đề khác.")
    return lines
