"""The audit log is hash-chained: editing, deleting or reordering entries is detected."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, update

from signing_service import audit
from signing_service.services.container import Services
from signing_service.store.models import AuditEntry


def _fill(services: Services, n: int = 5) -> None:
    with services.db.transaction() as session:
        for i in range(n):
            audit.append(
                session, actor="test", action="test.event", subject=f"s{i}", details={"i": i}
            )


def _verify(services: Services) -> audit.ChainReport:
    with services.db.transaction() as session:
        return audit.verify(session)


def test_intact_chain_verifies(services: Services) -> None:
    _fill(services)
    report = _verify(services)
    assert report.ok, report.problems
    assert report.entries >= 5


def test_edited_entry_is_detected(services: Services) -> None:
    _fill(services)
    with services.db.transaction() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(details='{"i":99}'))
    report = _verify(services)
    assert not report.ok
    assert any("entry 3" in p and "edited" in p for p in report.problems)


def test_deleted_entry_is_detected(services: Services) -> None:
    _fill(services)
    with services.db.transaction() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 3))
    assert not _verify(services).ok


def test_deleted_newest_entry_is_detected(services: Services) -> None:
    _fill(services)
    with services.db.transaction() as session:
        last = session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1))
        session.execute(delete(AuditEntry).where(AuditEntry.seq == last))
    report = _verify(services)
    assert not report.ok
    assert any("truncated" in p for p in report.problems)


def test_reordered_entries_are_detected(services: Services) -> None:
    _fill(services)
    with services.db.transaction() as session:
        a = session.get(AuditEntry, 2)
        b = session.get(AuditEntry, 4)
        assert a is not None and b is not None
        fields = ("at", "actor", "action", "subject", "details", "prev_hash", "hash")
        va = {f: getattr(a, f) for f in fields}
        vb = {f: getattr(b, f) for f in fields}
        # Swap contents while keeping sequence numbers (unique hash: go through a temp value).
        session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(hash="x" * 64))
        session.execute(update(AuditEntry).where(AuditEntry.seq == 4).values(**va))
        session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(**vb))
    assert not _verify(services).ok


def test_secrets_and_contents_are_refused_in_details(services: Services) -> None:
    with services.db.transaction() as session, pytest.raises(ValueError):
        audit.append(session, actor="test", action="x", details={"passphrase": "p"})


def test_rolled_back_change_leaves_no_audit_entry(services: Services) -> None:
    _fill(services, 1)
    before = _verify(services).entries
    with pytest.raises(RuntimeError), services.db.transaction() as session:
        audit.append(session, actor="test", action="x")
        raise RuntimeError("the change failed")
    report = _verify(services)
    assert report.ok and report.entries == before


def test_concurrent_appends_keep_one_chain(services: Services) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def worker(i: int) -> None:
        with services.db.transaction() as session:
            audit.append(session, actor="test", action="concurrent", details={"i": i})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(40)))
    report = _verify(services)
    assert report.ok, report.problems
