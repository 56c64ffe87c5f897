"""Preservation that runs by itself (issue 12 item 3): the plan, renewals with the clock moved,
the PostgreSQL queue with two workers and a SIGKILLed one, TSA failures during renewal.

The PKI is the dev PKI's configuration with two changes, built in the test: its TSA's
certificate ends on 2029-01-01 (the "first" TSA, which signs), and a second TSA, ``archive``,
has a certificate until 2045 (the operator's preservation TSA). Signed now (2026), a B-LTA
document is due two years before 2029-01-01; renewed by the archive TSA it is not due again
before 2043.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from sqlalchemy import func, select, text

from signing_service.pki.dev import DevPki, DevPkiServer, init_dev_pki
from signing_service.pki.softhsm import TokenKey
from signing_service.services import extension, preservation
from signing_service.services.container import Services
from signing_service.services.documents import get_document, read_content
from signing_service.services.signing import sign_document
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.store.models import Agency, AuditEntry, Document
from signing_service.verification.revinfo_cache import REVOCATION_CACHE
from tests.conftest import make_settings
from tests.support.archive_pki import (
    ARCHIVE_TSA_END,
    FIRST_TSA_END,
    archive_config,
    archive_key,
    archive_tsa_url,
)
from tests.support.pdfs import make_pdf
from tests.support.postgres import free_port

# Within two years of the first TSA certificate's end: documents it stamped are due.
DUE_MOMENT = datetime(2028, 1, 1, 3, 0, tzinfo=UTC)
# After the first TSA certificate's end.
AFTER_EXPIRY = datetime(2029, 6, 1, 3, 0, tzinfo=UTC)
AGENCY_A = "000.00.12.H12"
# A horizon that makes first-TSA documents due today (2026-11 + 1000 days > 2029-01-01) and
# archive-TSA ones not: for the tests that run other processes, where the clock cannot move.
DUE_TODAY_DAYS = "1000"


@pytest.fixture(scope="module")
def archive_pki(
    tmp_path_factory: pytest.TempPathFactory, hsm_key: TokenKey | None
) -> Iterator[tuple[DevPki, int, Path]]:
    directory = tmp_path_factory.mktemp("archive-pki")
    config = archive_config(directory)
    archive_key(directory / "pki")
    port = free_port()
    pki = init_dev_pki(
        directory / "pki",
        config,
        f"http://127.0.0.1:{port}",
        DEV_KEY_PASSPHRASE.encode(),
        hsm_public_key=hsm_key.public_key if hsm_key else None,
    )
    server = DevPkiServer(pki, "127.0.0.1", port).start()
    yield pki, port, config
    server.stop()


def _overrides(archive_pki: tuple[DevPki, int, Path], **extra: Any) -> dict[str, Any]:
    pki, _, config = archive_pki
    return {
        "dev_pki_config": config,
        "tsas": {"archive": archive_tsa_url(pki.url_prefix), **extra.pop("tsas", {})},
        "default_tsa": "dev",
        "preservation_tsa": "archive",
        **extra,
    }


def build(
    tmp_path: Path, database_url: str, archive_pki: tuple[DevPki, int, Path], **extra: Any
) -> Services:
    pki, port, _ = archive_pki
    return Services.build(
        make_settings(tmp_path, database_url, (pki, port), **_overrides(archive_pki, **extra))
    )


@pytest.fixture
def services(
    tmp_path: Path, database_url: str, archive_pki: tuple[DevPki, int, Path]
) -> Iterator[Services]:
    built = build(tmp_path, database_url, archive_pki)
    yield built
    built.close()


def agency(services: Services, code: str = AGENCY_A) -> Agency:
    with services.db.transaction() as session:
        return session.scalars(select(Agency).where(Agency.code == code)).one()


def sign(services: Services, level: str, title: str) -> str:
    """A stored signed document at ``level`` (first TSA); its id."""
    result = sign_document(
        services,
        agency(services),
        profile_name="agency-a-seal",
        pdf=make_pdf(text=title),
        level=level,
        actor="test",
    )
    return result.document.id


def content(services: Services, document_id: str) -> bytes:
    return read_content(services, get_document(services, agency(services).id, document_id))


def renewed_early(services: Services, document_id: str) -> str:
    """A new version of ``document_id`` whose archive timestamp is the archive TSA's (an
    earlier renewal); its id."""
    a = agency(services)
    doc = get_document(services, a.id, document_id)
    data = extension.extend_pdf(services, content(services, document_id), "B-LTA", tsa="archive")
    return extension.store_version(services, a, doc, data, reason="test", level="B-LTA").id


def versions(services: Services, document_id: str) -> list[str]:
    return [d.id for d in extension.version_line(services, agency(services).id, document_id)]


def audit_count(services: Services, action: str) -> int:
    with services.db.transaction() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.action == action)
            )
            or 0
        )


@contextmanager
def clock_at(moment: datetime) -> Iterator[None]:
    """The clock moved to ``moment`` (and running). The process's revocation cache is emptied
    on the way in and out: its entries expire on the monotonic clock, which knows nothing of
    the jump, so an OCSP answer of 2026 would otherwise be served as fresh in 2028."""
    REVOCATION_CACHE.clear()
    try:
        with time_machine.travel(moment, tick=True):
            yield
    finally:
        REVOCATION_CACHE.clear()


def verify_at(services: Services, data: bytes, moment: datetime) -> dict[str, Any]:
    report = asyncio.run(services.verifier.async_verify(data, validation_time=moment))
    return report.to_dict()


# -- archive facts and the plan ----------------------------------------------------------------
def test_archive_facts_read_the_newest_document_timestamp(services: Services) -> None:
    lta = sign(services, "B-LTA", "facts")
    facts = preservation.archive_facts(content(services, lta))
    assert facts is not None
    assert facts.tsa_not_after == FIRST_TSA_END
    assert facts.digest_algorithm == "sha256"
    renewed = renewed_early(services, lta)
    facts = preservation.archive_facts(content(services, renewed))
    assert facts is not None and facts.tsa_not_after == ARCHIVE_TSA_END
    # B-T has no document timestamp: nothing to preserve.
    assert preservation.archive_facts(content(services, sign(services, "B-T", "bt"))) is None
    assert preservation.archive_facts(make_pdf()) is None
    assert preservation.archive_facts(b"%PDF-1.7 hong") is None


def test_time_travel_run_renews_exactly_the_documents_due(services: Services) -> None:
    """The issue's done-means on the database of the run (SQLite: in-process; PostgreSQL:
    through the queue, in this process): with the clock past the first TSA's horizon."""
    due_a = sign(services, "B-LTA", "due a")
    due_b = sign(services, "B-LTA", "due b")
    early = sign(services, "B-LTA", "renewed early")
    early_v2 = renewed_early(services, early)
    bt = sign(services, "B-T", "b-t")
    blt = sign(services, "B-LT", "b-lt")
    # Today nothing is due (2026 + 2 years < 2029-01-01).
    assert preservation.plan(services) == []
    with clock_at(DUE_MOMENT):
        due = preservation.plan(services)
        assert sorted(d.document_id for d in due) == sorted([due_a, due_b])
        assert {d.reason for d in due} == {preservation.REASON_TSA_EXPIRY}
        assert {d.tsa_not_after for d in due} == {FIRST_TSA_END}
        assert {d.agency_code for d in due} == {AGENCY_A}
        run = preservation.run_queue if preservation.uses_queue(services) else None
        summary = run(services) if run else preservation.run_inline(services)
        assert summary.count("renewed") == 2, summary.to_dict()
        assert summary.count("failed") == 0, summary.to_dict()
        renewed = {o.document_id: o.new_document_id for o in summary.outcomes if o.new_document_id}
        assert sorted(renewed) == sorted([due_a, due_b])
        # Done: nothing is due any more, and a second run renews nothing.
        assert preservation.plan(services) == []
        again = preservation.run_inline(services)
        assert again.due == 0 and again.outcomes == []
    # Exactly those: the others kept their versions.
    assert versions(services, early) == [early, early_v2]
    assert versions(services, bt) == [bt]
    assert versions(services, blt) == [blt]
    for doc_id in (due_a, due_b):
        line = versions(services, doc_id)
        assert line == [doc_id, renewed[doc_id]]
        with services.db.transaction() as session:
            new = session.get(Document, renewed[doc_id])
            assert new is not None and new.level == "B-LTA"
            assert new.archive_digest_algorithm == "sha256"
            assert preservation._aware(new.archive_tsa_not_after) == ARCHIVE_TSA_END  # type: ignore[arg-type]
    assert audit_count(services, "preservation.renewed") == 2
    assert audit_count(services, "preservation.failed") == 0

    # After the first TSA certificate's end: the renewed version verifies, the old does not.
    with clock_at(AFTER_EXPIRY):
        new_report = verify_at(services, content(services, renewed[due_a]), AFTER_EXPIRY)
        old_report = verify_at(services, content(services, due_a), AFTER_EXPIRY)
    assert new_report["verdict"] == "TOTAL_PASSED", json.dumps(new_report, ensure_ascii=False)[
        :3000
    ]
    assert new_report["validation_time"] == "2029-06-01T10:00:00+07:00"
    assert [s["type"] for s in new_report["signatures"]].count("document_timestamp") == 2
    assert old_report["verdict"] != "TOTAL_PASSED"
    stamp = next(s for s in old_report["signatures"] if s["type"] == "document_timestamp")
    assert stamp["checks"]["timestamp"]["code"] == "TIMESTAMP_TSA_CERT_EXPIRED", stamp


def test_retiring_digest_makes_documents_due(
    tmp_path: Path, database_url: str, archive_pki: tuple[DevPki, int, Path]
) -> None:
    services = build(tmp_path, database_url, archive_pki, preservation_retiring_digests=["sha256"])
    try:
        lta = sign(services, "B-LTA", "algorithm")
        renewed = renewed_early(services, lta)
        sign(services, "B-T", "bt")
        due = preservation.plan(services)
        # Not expiring for years, but its archive timestamp's algorithm is retiring.
        assert [(d.document_id, d.reason, d.digest_algorithm) for d in due] == [
            (renewed, preservation.REASON_ALGORITHM, "sha256")
        ]
    finally:
        services.close()


# -- failures during renewal -------------------------------------------------------------------
def _objects(services: Services) -> set[str]:
    return set(services.store.list())


@pytest.mark.parametrize("tsa", ["refusing", "untrusted"])
def test_tsa_failure_is_recorded_retried_and_writes_nothing(
    tmp_path: Path,
    database_url: str,
    archive_pki: tuple[DevPki, int, Path],
    dev_pki: tuple[DevPki, int],
    tsa: str,
) -> None:
    """A TSA that refuses (nothing listens) or answers with a token of a PKI this service does
    not trust (the shipped dev PKI, another root): the failure is audited with its code, the
    document keeps its version and no object is left; on PostgreSQL the job waits for its
    back-off, then is tried again."""
    other, _ = dev_pki
    urls = {"refusing": f"http://127.0.0.1:{free_port()}/tsa", "untrusted": other.tsa_url}
    services = build(
        tmp_path,
        database_url,
        archive_pki,
        tsas={"broken": urls[tsa]},
        preservation_tsa="broken",
        preservation_horizon_days=int(DUE_TODAY_DAYS),
        preservation_retry_base_seconds=2,
    )
    try:
        doc_id = sign(services, "B-LTA", "failure")
        before = _objects(services)
        queue = preservation.uses_queue(services)
        summary = preservation.run_queue(services) if queue else preservation.run_inline(services)
        assert summary.count("failed") == 1 and summary.count("renewed") == 0
        code = summary.outcomes[0].code
        expected = "TIMESTAMP_UNAVAILABLE" if tsa == "refusing" else "TIMESTAMP_UNTRUSTED"
        assert code == expected, summary.to_dict()
        assert versions(services, doc_id) == [doc_id]
        assert _objects(services) == before
        assert audit_count(services, "preservation.failed") == 1
        with services.db.transaction() as session:
            entry = session.scalars(
                select(AuditEntry).where(AuditEntry.action == "preservation.failed")
            ).one()
        assert entry.subject == doc_id and json.loads(entry.details)["code"] == expected
        if queue:
            with services.db.engine.connect() as conn:
                status, attempts, wait = conn.execute(
                    text(
                        "SELECT status, attempts, EXTRACT(EPOCH FROM scheduled_at - now()) "
                        "FROM procrastinate.procrastinate_jobs"
                    )
                ).one()
            # Back-off: 2 ** 1 s after the first failure.
            assert (status, attempts) == ("todo", 1)
            assert 0 < float(wait) <= 2.5
            time.sleep(2.2)
            second = preservation.run_queue(services)
            assert second.deferred == 0  # the waiting job, not a new one
            assert [o.status for o in second.outcomes] == ["failed"]
            with services.db.engine.connect() as conn:
                status, attempts = conn.execute(
                    text("SELECT status, attempts FROM procrastinate.procrastinate_jobs")
                ).one()
            assert (status, attempts) == ("todo", 2)
            assert audit_count(services, "preservation.failed") == 2
            assert versions(services, doc_id) == [doc_id]
    finally:
        services.close()


def test_tsa_too_short_is_refused_before_anything_is_stored(
    tmp_path: Path, database_url: str, archive_pki: tuple[DevPki, int, Path]
) -> None:
    """Renewing with a TSA whose certificate ends within the horizon would leave the
    document due: refused (PRESERVATION_TSA_TOO_SHORT), nothing stored."""
    services = build(
        tmp_path,
        database_url,
        archive_pki,
        preservation_tsa="dev",
        preservation_horizon_days=int(DUE_TODAY_DAYS),
    )
    try:
        doc_id = sign(services, "B-LTA", "short")
        before = _objects(services)
        summary = preservation.run_inline(services)
        assert [(o.status, o.code) for o in summary.outcomes] == [
            ("failed", "PRESERVATION_TSA_TOO_SHORT")
        ]
        assert versions(services, doc_id) == [doc_id]
        assert _objects(services) == before
    finally:
        services.close()


def test_retiring_the_renewals_own_digest_renews_at_most_once(
    tmp_path: Path, database_url: str, archive_pki: tuple[DevPki, int, Path]
) -> None:
    """Red team 12 F9: with SHA-256 listed as retiring, every run renewed every B-LTA document
    again (the new timestamp is SHA-256 too: due at once, a new version each run). Two runs in
    a row: refused (PRESERVATION_DIGEST_RETIRING) before storing, no new version."""
    services = build(tmp_path, database_url, archive_pki, preservation_retiring_digests=["sha256"])
    try:
        doc_id = sign(services, "B-LTA", "retiring")
        before = _objects(services)
        for _ in range(2):
            summary = preservation.run_inline(services)
            assert [(o.status, o.code) for o in summary.outcomes] == [
                ("failed", "PRESERVATION_DIGEST_RETIRING")
            ]
        assert versions(services, doc_id) == [doc_id]
        assert _objects(services) == before
        assert audit_count(services, "preservation.renewed") == 0
    finally:
        services.close()


# -- other processes: the CLI, two workers, a killed worker ------------------------------------
def _env(services: Services, archive_pki: tuple[DevPki, int, Path], **extra: str) -> dict[str, str]:
    pki, port, config = archive_pki
    settings = services.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_SERVICE_")}
    env.update(
        {
            "SIGNING_SERVICE_DATA_DIR": str(settings.data_dir),
            "SIGNING_SERVICE_DATABASE_URL": settings.effective_database_url,
            "SIGNING_SERVICE_DEV_PKI_DIR": str(pki.directory),
            "SIGNING_SERVICE_DEV_PKI_PORT": str(port),
            "SIGNING_SERVICE_DEV_PKI_CONFIG": str(config),
            "SIGNING_SERVICE_DEV_SOFTHSM_DIR": str(settings.softhsm_dir),
            "SIGNING_SERVICE_TSAS": json.dumps(settings.tsas),
            "SIGNING_SERVICE_DEFAULT_TSA": "dev",
            "SIGNING_SERVICE_PRESERVATION_TSA": "archive",
            "SIGNING_SERVICE_PRESERVATION_HORIZON_DAYS": DUE_TODAY_DAYS,
            "SIGNING_SERVICE_FETCH_TIMEOUT_SECONDS": "3",
            **extra,
        }
    )
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "signing_service.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


@pytest.mark.slow
def test_cli_plan_and_run(services: Services, archive_pki: tuple[DevPki, int, Path]) -> None:
    doc_id = sign(services, "B-LTA", "cli")
    env = _env(services, archive_pki)
    code, out, err = finished(cli(env, "preservation", "plan"))
    assert code == 0, err
    assert doc_id in out and AGENCY_A in out
    assert "2029-01-01T07:00:00+07:00" in out  # the TSA certificate's end, Vietnam time
    assert "chứng thư của đơn vị cấp dấu thời gian sắp hết hạn" in out
    code, out, err = finished(cli(env, "preservation", "run", "--json"))
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["due"], summary["renewed"], summary["failed"]) == (1, 1, 0), summary
    assert versions(services, doc_id)[0] == doc_id and len(versions(services, doc_id)) == 2
    code, out, err = finished(cli(env, "preservation", "plan", "--json"))
    assert code == 0 and json.loads(out) == []


def _queue_rows(services: Services) -> list[tuple[str, str, int]]:
    with services.db.engine.connect() as conn:
        return [
            (r[0], r[1], r[2])
            for r in conn.execute(
                text(
                    "SELECT args->>'document_id', status::text, attempts "
                    "FROM procrastinate.procrastinate_jobs ORDER BY id"
                )
            )
        ]


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_started_together_renew_each_document_once(
    tmp_path: Path, archive_pki: tuple[DevPki, int, Path], request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("postgres")
    if server is None:
        pytest.skip("PostgreSQL binaries not installed (run `make test`, which installs them)")
    services = build(tmp_path, server.create_database(f"t_{uuid.uuid4().hex[:12]}"), archive_pki)
    try:
        docs = [sign(services, "B-LTA", f"two workers {i}") for i in range(4)]
        env = _env(services, archive_pki)
        workers = [cli(env, "preservation", "run", "--json") for _ in range(2)]
        results = [finished(w) for w in workers]
        for code, _, err in results:
            assert code == 0, err
        summaries = [json.loads(out) for _, out, _ in results]
        assert sum(s["renewed"] for s in summaries) == 4, summaries
        for doc_id in docs:
            assert len(versions(services, doc_id)) == 2, doc_id
        assert audit_count(services, "preservation.renewed") == 4
        assert audit_count(services, "document.version_created") == 4
        jobs = _queue_rows(services)
        assert {j[0] for j in jobs} == set(docs)
        assert {j[1] for j in jobs} == {"succeeded"}
        # A worker may defer a document again once the other's job for it is running (the
        # queueing lock covers waiting jobs only): that job finds it renewed and skips it.
        assert sum(s["skipped"] for s in summaries) == len(jobs) - len(docs), summaries
        assert sum(s["failed"] for s in summaries) == 0
    finally:
        services.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_mid_renewal_loses_nothing(
    tmp_path: Path, archive_pki: tuple[DevPki, int, Path], request: pytest.FixtureRequest
) -> None:
    """A worker killed (SIGKILL) while renewing: the previous version stays current, the next
    run hands the job back (stalled heartbeat) and completes it, and after `storage
    reconcile` no object is left that no row names."""
    from signing_service.services.attachments import reconcile

    server = request.getfixturevalue("postgres")
    if server is None:
        pytest.skip("PostgreSQL binaries not installed (run `make test`, which installs them)")
    services = build(
        tmp_path,
        server.create_database(f"t_{uuid.uuid4().hex[:12]}"),
        archive_pki,
        preservation_stalled_seconds=10,
        preservation_horizon_days=int(DUE_TODAY_DAYS),
    )
    try:
        docs = [sign(services, "B-LTA", f"kill {i}") for i in range(3)]
        assert preservation.enqueue_due(services) == 3
        env = _env(services, archive_pki, SIGNING_SERVICE_PRESERVATION_STALLED_SECONDS="10")
        worker = cli(env, "preservation", "worker")
        killed_during: list[str] = []
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and worker.poll() is None:
                doing = [j for j in _queue_rows(services) if j[1] == "doing"]
                if doing:
                    worker.send_signal(signal.SIGKILL)
                    killed_during = [doing[0][0]]
                    break
                time.sleep(0.01)
        finally:
            if worker.poll() is None and not killed_during:
                worker.kill()
            worker.wait(timeout=30)
        assert killed_during, "the worker never started a renewal"
        assert worker.returncode == -signal.SIGKILL
        victim = killed_during[0]
        line = versions(services, victim)
        # Meanwhile: the previous version is current unless the renewal had committed.
        assert line[0] == victim and len(line) in (1, 2)
        # A later run hands the stalled job back once the dead worker's heartbeat is old.
        time.sleep(11)
        summary = preservation.run_queue(services)
        assert summary.count("failed") == 0, summary.to_dict()
        for doc_id in docs:
            assert len(versions(services, doc_id)) == 2, doc_id
        assert {j[1] for j in _queue_rows(services)} == {"succeeded"}
        assert audit_count(services, "document.version_created") == 3
        # No orphan after reconcile: every object left is a document's.
        from datetime import timedelta

        from signing_service.services.evidence import referenced_keys as referenced_evidence

        reconcile(services, min_age=timedelta(0), actor="test")
        with services.db.transaction() as session:
            keys = {k for k in session.scalars(select(Document.storage_key)) if k}
            # and the evidence its signatures keep (services/evidence.py, content-addressed).
            keys |= referenced_evidence(session)
        assert _objects(services) <= keys
    finally:
        services.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_worker_stops_on_sigterm_and_refuses_sqlite(
    tmp_path: Path, archive_pki: tuple[DevPki, int, Path], request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("postgres")
    if server is None:
        pytest.skip("PostgreSQL binaries not installed (run `make test`, which installs them)")
    services = build(tmp_path, server.create_database(f"t_{uuid.uuid4().hex[:12]}"), archive_pki)
    try:
        worker = cli(_env(services, archive_pki), "preservation", "worker")
        try:
            assert worker.stdout is not None
            assert "Tiến trình gia hạn lưu trữ đang chạy" in worker.stdout.readline()
            time.sleep(1)
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=30)
            assert code == 0, worker.stderr.read() if worker.stderr is not None else code
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=30)
        sqlite = _env(services, archive_pki)
        sqlite["SIGNING_SERVICE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'khac.db'}"
        code, _, err = finished(cli(sqlite, "preservation", "worker"))
        assert code == 6 and err.startswith("Cấu hình không hợp lệ: SIGNING_SERVICE_DATABASE_URL")
    finally:
        services.close()


def test_queue_probe_reports_what_waits(services: Services) -> None:
    """The metrics' queue probe: on PostgreSQL the renewal jobs waiting and the age of the
    oldest; on SQLite (no queue) the documents due."""
    from signing_service import metrics

    probe = preservation.queue_probe(services)
    assert probe() == (0, None)
    sign(services, "B-LTA", "probe")
    with clock_at(DUE_MOMENT):
        if preservation.uses_queue(services):
            assert preservation.enqueue_due(services) == 1
            depth, age = probe()
            assert depth == 1 and age is not None and age >= 0
        else:
            # B-LTA signing notes the TSA certificate's end (services/signing.py).
            assert probe() == (1, None)
            assert len(preservation.plan(services)) == 1
    preservation.register_queue_probe(services)
    try:
        exposition = metrics.exposition()[0].decode()
        assert "signing_service_job_queue_depth" in exposition
        assert "signing_service_preservation_renewals_total" in exposition
    finally:
        metrics.set_queue_probe(None)


@pytest.mark.slow
@pytest.mark.postgres
def test_worker_on_a_schedule_renews_by_itself(
    tmp_path: Path, archive_pki: tuple[DevPki, int, Path], request: pytest.FixtureRequest
) -> None:
    """`preservation worker` with the schedule on defers the plan on its cron (every minute
    here) and renews what is due, with nobody running `preservation run`."""
    server = request.getfixturevalue("postgres")
    if server is None:
        pytest.skip("PostgreSQL binaries not installed (run `make test`, which installs them)")
    services = build(tmp_path, server.create_database(f"t_{uuid.uuid4().hex[:12]}"), archive_pki)
    try:
        docs = [sign(services, "B-LTA", f"schedule {i}") for i in range(2)]
        env = _env(
            services,
            archive_pki,
            SIGNING_SERVICE_PRESERVATION_SCHEDULE="true",
            SIGNING_SERVICE_PRESERVATION_CRON="* * * * *",
        )
        worker = cli(env, "preservation", "worker")
        try:
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline and worker.poll() is None:
                if all(len(versions(services, d)) == 2 for d in docs):
                    break
                time.sleep(1)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=30)
        for doc_id in docs:
            assert len(versions(services, doc_id)) == 2, (
                worker.stderr.read() if worker.stderr else ""
            )
        tasks = {(r[0], r[1]) for r in _task_rows(services)}
        assert ("preservation.schedule", "succeeded") in tasks
        assert ("preservation.renew", "succeeded") in tasks
    finally:
        services.close()


def _task_rows(services: Services) -> list[tuple[str, str]]:
    with services.db.engine.connect() as conn:
        return [
            (r[0], r[1])
            for r in conn.execute(
                text("SELECT task_name, status::text FROM procrastinate.procrastinate_jobs")
            )
        ]
