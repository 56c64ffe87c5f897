"""Preservation of stored B-LTA documents: renewal before the archive timestamp weakens
(issue 12 item 3; ETSI EN 319 142-1 §5.5 PAdES-LTA "augmentation", EN 319 102-1 §5.6.3).

A B-LTA document stays verifiable only as long as its newest document timestamp does: when that
timestamp's TSA certificate expires (or its digest algorithm is retired), nothing proves any
more that the signatures and validation data under it existed before. Adding, in time,
validation data for that timestamp (its TSA's chain and revocation status, in the DSS) and a
new document timestamp over everything carries the proof forward (the verifier then judges
the older timestamp at the time the newer one proves, validate.py ``_timestamp``).

*Due* (:func:`plan`): the newest version of each stored B-LTA document whose newest timestamp's
TSA certificate ends within ``SIGNING_SERVICE_PRESERVATION_HORIZON_DAYS`` of now, or whose
newest timestamp uses a digest algorithm listed in ``SIGNING_SERVICE_PRESERVATION_RETIRING_
DIGESTS``. A database query over ``documents.archive_tsa_not_after`` and
``documents.archive_digest_algorithm``; :func:`index` first fills both for versions that do
not have them yet (read once from the bytes, which never change: versions are written once).

*Renewal* (:func:`renew`): re-checks that the document is still due and still the newest
version, extends it (``extension.extend_pdf`` to B-LTA: validation data for the newest
timestamp and a new document timestamp from ``SIGNING_SERVICE_PRESERVATION_TSA``) and stores
the result as a new version (``extension.store_version``, one transaction; the previous version
stays and stays current until it commits). A renewal whose new timestamp would itself be due
is refused (``PRESERVATION_TSA_TOO_SHORT``, or ``PRESERVATION_DIGEST_RETIRING`` when its
digest is itself retiring) before anything is written. Two renewals of the same
version cannot both commit: ``documents.previous_version_id`` is unique, and the loser finds
the document renewed (``skipped``). Each renewal and each failure has an audit entry
(``preservation.renewed`` / ``preservation.failed``) and moves
``signing_service_preservation_renewals_total{outcome}``.

*Running it*: on PostgreSQL, a procrastinate job queue (:func:`queue_app`): one job per due
document (``queueing_lock`` and ``lock`` = the document id: one waiting and one running job per
document, so any number of workers renew each document once), retried with exponential
back-off up to ``PRESERVATION_MAX_ATTEMPTS`` tries; ``preservation run`` defers what is due and
works the queue until it is empty (:func:`run_queue`), ``preservation worker`` works it for good
and, with ``PRESERVATION_SCHEDULE`` on, defers the plan on ``PRESERVATION_CRON``
(:func:`run_worker`). Jobs of a worker that died (SIGKILL, a lost machine) are handed back to
the queue once its heartbeat is ``PRESERVATION_STALLED_SECONDS`` old. On SQLite (development)
there is no queue: :func:`run_inline` renews in-process, one document after the other, with the
same checks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import aliased

from signing_service import audit, errors
from signing_service.store.models import Agency, Document, Signature
from signing_service.timefmt import api_time_or_none

if TYPE_CHECKING:
    import procrastinate

    from signing_service.services.container import Services

log = logging.getLogger(__name__)

QUEUE = "preservation"
RENEW_TASK = "preservation.renew"
SCHEDULE_TASK = "preservation.schedule"
# The PostgreSQL schema that holds procrastinate's tables (migration 0014).
QUEUE_SCHEMA = "procrastinate"
ACTOR = "preservation"
LTA = "B-LTA"

REASON_TSA_EXPIRY = "tsa_expiry"
REASON_ALGORITHM = "algorithm_retiring"
REASON_VI = {
    REASON_TSA_EXPIRY: "chứng thư của đơn vị cấp dấu thời gian sắp hết hạn",
    REASON_ALGORITHM: "thuật toán băm của dấu thời gian sắp bị loại bỏ",
}
# archive_digest_algorithm of a version whose bytes hold no document timestamp (nothing to
# renew; the column then says it was looked at).
NO_TIMESTAMP = "none"

RENEWALS = Counter(
    "signing_service_preservation_renewals_total",
    "Preservation renewals of B-LTA documents by outcome (renewed, failed, skipped).",
    ["outcome"],
)


# -- what a version holds ----------------------------------------------------------------------
@dataclass(frozen=True)
class ArchiveFacts:
    """Of a PDF's newest document timestamp: its TSA certificate's notAfter (aware UTC) and
    its digest algorithm (the message imprint's, asn1crypto's name)."""

    tsa_not_after: datetime | None
    digest_algorithm: str


def archive_facts(pdf: bytes) -> ArchiveFacts | None:
    """The facts of the newest document timestamp of ``pdf`` (RFC 3161 token in a
    ``/DocTimeStamp`` signature, ETSI EN 319 142-1 §5.4), or ``None`` when it has none or
    cannot be read. The TSA certificate is the token's signer (matched by issuer and serial
    or subject key identifier among the token's certificates)."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        reader = PdfFileReader(BytesIO(pdf), strict=False)
        stamps = [
            emb for emb in reader.embedded_signatures if emb.sig_object_type == "/DocTimeStamp"
        ]
        if not stamps:
            return None
        newest = max(stamps, key=lambda emb: emb.signed_revision)
        signed_data = newest.signed_data
        tst_info = signed_data["encap_content_info"]["content"].parsed
        digest = str(tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native)
        sid = signed_data["signer_infos"][0]["sid"]
        not_after = None
        for choice in signed_data["certificates"] or []:
            if choice.name != "certificate":
                continue
            cert = choice.chosen
            if sid.name == "issuer_and_serial_number":
                ias = sid.chosen
                match = (
                    cert.issuer == ias["issuer"]
                    and cert.serial_number == ias["serial_number"].native
                )
            else:
                match = cert.key_identifier == sid.chosen.native
            if match:
                not_after = cert.not_valid_after.astimezone(UTC)
                break
        return ArchiveFacts(not_after, digest.lower())
    except Exception:  # a version we cannot read is reported, never a crash
        log.warning("preservation: cannot read the document timestamp", exc_info=True)
        return None


# -- the plan ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Due:
    """A document due for renewal: its newest version's id, its agency's code, the notAfter of
    its newest timestamp's TSA certificate and that timestamp's digest algorithm, and why
    (:data:`REASON_TSA_EXPIRY` or :data:`REASON_ALGORITHM`)."""

    document_id: str
    agency_code: str
    tsa_not_after: datetime | None
    digest_algorithm: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "agency": self.agency_code,
            "tsa_not_after": api_time_or_none(self.tsa_not_after),
            "digest_algorithm": self.digest_algorithm,
            "reason": self.reason,
            "reason_message": REASON_VI[self.reason],
        }


def _now(now: datetime | None) -> datetime:
    return now.astimezone(UTC) if now is not None else datetime.now(UTC)


def _lta_newest():  # type: ignore[no-untyped-def]
    """The WHERE clause of "newest version of a stored B-LTA document": no version extends it,
    and its level is B-LTA (a version made by extension says so itself; a signed document
    carries its signature's level)."""
    successor = aliased(Document)
    newest = ~exists().where(successor.previous_version_id == Document.id)
    signed_lta = exists().where(
        and_(Signature.output_document_id == Document.id, Signature.level == LTA)
    )
    is_lta = or_(Document.level == LTA, and_(Document.level.is_(None), signed_lta))
    return and_(newest, is_lta)


def _due_clause(services: Services, now: datetime):  # type: ignore[no-untyped-def]
    horizon_end = now + timedelta(days=services.settings.preservation_horizon_days)
    retiring = services.settings.preservation_retiring_digests
    clauses = [Document.archive_tsa_not_after < horizon_end]
    if retiring:
        clauses.append(Document.archive_digest_algorithm.in_(retiring))
    return or_(*clauses), horizon_end


def index(services: Services, *, batch: int = 200) -> int:
    """Note the archive facts (:func:`archive_facts`) on every newest B-LTA version that has
    none yet; returns how many were noted. A version that cannot be read (storage down, bytes
    changed) is left for the next run and logged."""
    from signing_service.services.documents import read_content

    noted = 0
    last = ""
    while True:
        with services.db.transaction() as session:
            # Keyset pages in id order: a version that cannot be read is passed over, not
            # fetched again and again.
            rows = session.scalars(
                select(Document)
                .where(_lta_newest(), Document.archive_digest_algorithm.is_(None))
                .where(Document.id > last)
                .order_by(Document.id)
                .limit(batch)
            ).all()
        if not rows:
            return noted
        for doc in rows:
            last = doc.id
            try:
                data = read_content(services, doc)
            except errors.ServiceError as e:
                log.warning("preservation: cannot read document %s: %s", doc.id, e.code)
                continue
            facts = archive_facts(data)
            values: dict[str, Any] = {
                "archive_digest_algorithm": facts.digest_algorithm if facts else NO_TIMESTAMP
            }
            if doc.archive_tsa_not_after is None and facts is not None:
                values["archive_tsa_not_after"] = facts.tsa_not_after
            with services.db.transaction() as session:
                session.execute(update(Document).where(Document.id == doc.id).values(**values))
            noted += 1


def plan(services: Services, *, now: datetime | None = None, refresh: bool = True) -> list[Due]:
    """The documents due for renewal at ``now`` (default: the current time), soonest expiry
    first. ``refresh``: run :func:`index` first (the versions stored since the last look)."""
    moment = _now(now)
    if refresh:
        index(services)
    due, horizon_end = _due_clause(services, moment)
    retiring = set(services.settings.preservation_retiring_digests)
    with services.db.transaction() as session:
        rows = session.execute(
            select(
                Document.id,
                Agency.code,
                Document.archive_tsa_not_after,
                Document.archive_digest_algorithm,
            )
            .join(Agency, Agency.id == Document.agency_id)
            .where(_lta_newest(), due)
            .order_by(Document.archive_tsa_not_after, Document.id)
        ).all()
    out = []
    for doc_id, code, not_after, digest in rows:
        expiring = not_after is not None and _aware(not_after) < horizon_end
        reason = REASON_TSA_EXPIRY if expiring or digest not in retiring else REASON_ALGORITHM
        out.append(Due(doc_id, code, _aware(not_after) if not_after else None, digest, reason))
    return out


def _aware(moment: datetime) -> datetime:
    # SQLite gives back naive datetimes (stored as UTC).
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- one renewal -------------------------------------------------------------------------------
@dataclass
class Outcome:
    """One renewal: ``status`` ``renewed`` (``new_document_id`` is the new version),
    ``skipped`` (no longer due, or another run renewed it first: ``code`` says which) or
    ``failed`` (``code`` and ``message``: the stable error, nothing stored)."""

    document_id: str
    status: str
    new_document_id: str | None = None
    code: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _still_due(services: Services, document_id: str, now: datetime) -> tuple[Document, Agency]:
    """The document and its agency when it is still the newest B-LTA version and due; else
    :class:`_NotDue` naming why."""
    due, _ = _due_clause(services, now)
    with services.db.transaction() as session:
        doc = session.get(Document, document_id)
        if doc is None:
            raise _NotDue("DOCUMENT_NOT_FOUND")
        if not session.scalar(select(exists().where(Document.id == document_id, _lta_newest()))):
            raise _NotDue("SUPERSEDED")
        if not session.scalar(select(exists().where(Document.id == document_id, due))):
            raise _NotDue("NOT_DUE")
        agency = session.get(Agency, doc.agency_id)
        assert agency is not None
    return doc, agency


class _NotDue(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _record_failure(
    services: Services,
    doc_id: str,
    agency_code: str | None,
    error: errors.ServiceError,
    attempt: int,
) -> None:
    try:
        with services.db.transaction() as session:
            audit.append(
                session,
                actor=ACTOR,
                action="preservation.failed",
                agency_code=agency_code,
                subject=doc_id,
                details={"code": error.code, "attempt": attempt, **_safe(error.details)},
            )
    except Exception:  # the failure stays counted and logged
        log.exception("preservation: could not record the failure of %s", doc_id)


def _safe(details: dict[str, Any]) -> dict[str, Any]:
    # Audit details are small and plain: scalars only.
    return {
        f"detail_{k}": v
        for k, v in details.items()
        if isinstance(v, str | int | float | bool) and len(str(v)) <= 200
    }


def renew(
    services: Services,
    document_id: str,
    *,
    now: datetime | None = None,
    attempt: int = 1,
) -> Outcome:
    """Renew one document (module docstring): ``renewed``, ``skipped`` or ``failed``; never
    raises for a document that cannot be renewed (the failure is audited and counted). The new
    version's archive facts are noted on it (so the next plan needs no read)."""
    from signing_service.services import extension
    from signing_service.services.documents import read_content

    moment = _now(now)
    agency_code: str | None = None
    try:
        doc, agency = _still_due(services, document_id, moment)
        agency_code = agency.code
        data = read_content(services, doc)
        extended = _extend(services, extension, data, now)
        facts = archive_facts(extended)
        _, horizon_end = _due_clause(services, moment)
        if facts is None or facts.tsa_not_after is None or facts.tsa_not_after <= horizon_end:
            # Renewing with this TSA would leave the document due: refuse before storing.
            raise errors.PreservationTsaTooShort(
                details={"tsa_not_after": api_time_or_none(facts.tsa_not_after if facts else None)}
            )
        # Red team 12 F9: a new timestamp with a retiring digest leaves the document due at
        # once; stored, every run would add one more version. Refused like a short TSA.
        extension.check_renewed_digest(services, extended)
        try:
            new_doc = extension.store_version(
                services, agency, doc, extended, reason="preservation", level=LTA, actor=ACTOR
            )
        except errors.DocumentNotLatestVersion:
            raise _NotDue("SUPERSEDED") from None
        with services.db.transaction() as session:
            # What the plan reads, noted now: the bytes are at hand.
            session.execute(
                update(Document)
                .where(Document.id == new_doc.id)
                .values(
                    archive_digest_algorithm=facts.digest_algorithm,
                    archive_tsa_not_after=facts.tsa_not_after,
                )
            )
            audit.append(
                session,
                actor=ACTOR,
                action="preservation.renewed",
                agency_code=agency.code,
                subject=document_id,
                details={
                    "new_document": new_doc.id,
                    "previous_tsa_not_after": api_time_or_none(
                        _aware(doc.archive_tsa_not_after) if doc.archive_tsa_not_after else None
                    ),
                    "tsa_not_after": api_time_or_none(facts.tsa_not_after),
                    "digest_algorithm": facts.digest_algorithm,
                    "attempt": attempt,
                },
            )
    except _NotDue as e:
        RENEWALS.labels("skipped").inc()
        return Outcome(document_id, "skipped", code=e.code)
    except errors.ServiceError as e:
        RENEWALS.labels("failed").inc()
        _record_failure(services, document_id, agency_code, e, attempt)
        return Outcome(document_id, "failed", code=e.code, message=e.message)
    except Exception:
        # A bug: logged with its traceback, recorded as a failure, retried like one.
        log.exception("preservation: renewal of %s failed", document_id)
        RENEWALS.labels("failed").inc()
        error = errors.ServiceError()
        _record_failure(services, document_id, agency_code, error, attempt)
        return Outcome(document_id, "failed", code=error.code, message=error.message)
    RENEWALS.labels("renewed").inc()
    return Outcome(document_id, "renewed", new_document_id=new_doc.id)


def _extend(services: Services, extension: Any, data: bytes, now: datetime | None) -> bytes:
    # B-LTA → B-LTA: validation data for the newest document timestamp and a new one, from
    # the operator's preservation TSA (by name; None: the default TSA).
    return extension.extend_pdf(  # type: ignore[no-any-return]
        services, data, LTA, now=now, tsa=services.settings.preservation_tsa
    )


# -- running it --------------------------------------------------------------------------------
@dataclass
class RunSummary:
    """One ``preservation run``: how many were due, deferred (queue) and the outcomes."""

    due: int = 0
    deferred: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    recovered: int = 0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "deferred": self.deferred,
            "recovered": self.recovered,
            "renewed": self.count("renewed"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


def uses_queue(services: Services) -> bool:
    """The queue is PostgreSQL's; SQLite renews in-process."""
    return services.db.engine.dialect.name == "postgresql"


def run_inline(services: Services, *, now: datetime | None = None) -> RunSummary:
    """Renew everything due, in this process, one document after the other (SQLite; also
    usable on PostgreSQL without the queue). A failure is recorded and the run goes on; the
    next run tries that document again."""
    due = plan(services, now=now)
    summary = RunSummary(due=len(due))
    for item in due:
        summary.outcomes.append(renew(services, item.document_id, now=now))
    return summary


def conninfo(services: Services) -> str:
    """libpq connection string of the service's PostgreSQL database, with the queue's schema
    first on the search path (its SQL is unqualified)."""
    from psycopg.conninfo import make_conninfo
    from sqlalchemy import make_url

    url = make_url(services.settings.effective_database_url).set(drivername="postgresql")
    return make_conninfo(
        url.render_as_string(hide_password=False), options=f"-c search_path={QUEUE_SCHEMA}"
    )


class RenewalFailed(Exception):
    """Raised by the queue's task for a failed renewal, so that procrastinate retries it."""


def queue_app(
    services: Services,
    *,
    now: Callable[[], datetime | None] = lambda: None,
    outcomes: list[Outcome] | None = None,
) -> procrastinate.App:
    """The procrastinate app of the preservation queue (PostgreSQL). Its task renews one
    document (:func:`renew`) and raises :class:`RenewalFailed` for a failure, which
    procrastinate retries after ``retry_base_seconds ** (attempts + 1)`` seconds, at most
    ``max_attempts`` tries. With ``PRESERVATION_SCHEDULE`` on, a periodic task defers the
    plan on ``PRESERVATION_CRON``. ``outcomes``: a list the task appends each outcome to
    (``preservation run`` counts them)."""
    import procrastinate
    from procrastinate import RetryStrategy

    settings = services.settings
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=conninfo(services)),
    )
    retry = RetryStrategy(
        max_attempts=settings.preservation_max_attempts,
        exponential_wait=settings.preservation_retry_base_seconds,
        retry_exceptions={RenewalFailed},
    )

    @app.task(name=RENEW_TASK, queue=QUEUE, retry=retry, pass_context=True)
    def renew_document(context: procrastinate.JobContext, document_id: str) -> str:
        job = context.job
        outcome = renew(services, document_id, now=now(), attempt=job.attempts + 1)
        if outcomes is not None:
            outcomes.append(outcome)
        if outcome.status == "failed":
            raise RenewalFailed(outcome.code)
        return outcome.status

    if settings.preservation_schedule:

        @app.periodic(cron=settings.preservation_cron, periodic_id="preservation-plan")
        @app.task(name=SCHEDULE_TASK, queue=QUEUE, queueing_lock=SCHEDULE_TASK)
        async def schedule(timestamp: int) -> int:
            return await defer_due(services, app)

    return app


async def defer_due(
    services: Services, app: procrastinate.App, *, now: datetime | None = None
) -> int:
    """Defer one renewal job per document due (:func:`plan`); returns how many were deferred.
    A document that already has a waiting job is not deferred again (``queueing_lock``), and a
    document's jobs never run two at a time (``lock``)."""
    from procrastinate.exceptions import AlreadyEnqueued

    due = await asyncio.to_thread(plan, services, now=now)
    task = app.tasks[RENEW_TASK]
    deferred = 0
    for item in due:
        try:
            await task.configure(
                lock=f"preservation:{item.document_id}",
                queueing_lock=f"preservation:{item.document_id}",
            ).defer_async(document_id=item.document_id)
            deferred += 1
        except AlreadyEnqueued:
            continue
    return deferred


def enqueue_due(services: Services, *, now: datetime | None = None) -> int:
    """Defer the renewals due now (:func:`defer_due`) without working them: for a deployment
    whose workers run elsewhere (``preservation worker``). Returns how many were deferred."""
    app = queue_app(services)

    async def main() -> int:
        async with app.open_async():
            return await defer_due(services, app, now=now)

    return asyncio.run(main())


async def recover_stalled(services: Services, app: procrastinate.App) -> int:
    """Hand back to the queue the renewals of workers that stopped sending heartbeats (killed,
    machine lost) ``PRESERVATION_STALLED_SECONDS`` ago; returns how many. Their previous
    version stayed current: a renewal commits all at once or not at all."""
    stalled = await app.job_manager.get_stalled_jobs(
        queue=QUEUE,
        seconds_since_heartbeat=services.settings.preservation_stalled_seconds,
    )
    count = 0
    for job in stalled:
        await app.job_manager.retry_job(job)
        count += 1
    return count


def _worker_options(services: Services) -> dict[str, Any]:
    stalled = services.settings.preservation_stalled_seconds
    return {
        "queues": [QUEUE],
        "update_heartbeat_interval": max(1.0, stalled / 5),
        "stalled_worker_timeout": float(stalled),
    }


def run_queue(services: Services, *, now: datetime | None = None) -> RunSummary:
    """``preservation run`` on PostgreSQL: hand back stalled jobs, defer what is due, then work
    the queue in this process until no job is ready (jobs waiting for their back-off stay
    queued for a later run or a worker)."""
    summary = RunSummary()
    outcomes: list[Outcome] = []
    app = queue_app(services, now=lambda: now, outcomes=outcomes)

    async def main() -> None:
        async with app.open_async():
            summary.recovered = await recover_stalled(services, app)
            due = await asyncio.to_thread(plan, services, now=now)
            summary.due = len(due)
            summary.deferred = await defer_due(services, app, now=now)
            await app.run_worker_async(
                wait=False,
                install_signal_handlers=False,
                listen_notify=False,
                name="preservation-run",
                **_worker_options(services),
            )

    asyncio.run(main())
    summary.outcomes = outcomes
    return summary


def run_worker(services: Services) -> None:
    """``preservation worker``: hand back stalled jobs, then work the queue until SIGINT or
    SIGTERM (procrastinate's handlers: the running renewal finishes first)."""
    app = queue_app(services)

    async def main() -> None:
        async with app.open_async():
            await recover_stalled(services, app)
            await app.run_worker_async(
                wait=True, name="preservation-worker", **_worker_options(services)
            )

    asyncio.run(main())


# -- the queue probe (metrics) -----------------------------------------------------------------
def queue_probe(services: Services) -> Callable[[], tuple[int, float | None]]:
    """``fn() -> (depth, oldest_age_seconds)`` for ``metrics.set_queue_probe``: renewal jobs
    waiting (``todo``) and the age of the oldest one's deferral, one query; on SQLite (no
    queue) the number of documents due and no age."""
    from sqlalchemy import text

    def probe() -> tuple[int, float | None]:
        if not uses_queue(services):
            moment = datetime.now(UTC)
            due, _ = _due_clause(services, moment)
            with services.db.transaction() as session:
                count = session.scalar(
                    select(func.count()).select_from(Document).where(_lta_newest(), due)
                )
            return int(count or 0), None
        with services.db.engine.connect() as conn:
            row = conn.execute(
                text(
                    f"SELECT count(*), EXTRACT(EPOCH FROM now() - min(e.at)) "
                    f"FROM {QUEUE_SCHEMA}.procrastinate_jobs j "
                    f"LEFT JOIN {QUEUE_SCHEMA}.procrastinate_events e "
                    "ON e.job_id = j.id AND e.type = 'deferred' "
                    "WHERE j.status = 'todo' AND j.queue_name = :queue"
                ),
                {"queue": QUEUE},
            ).one()
        return int(row[0]), float(row[1]) if row[1] is not None else None

    return probe


def register_queue_probe(services: Services) -> None:
    """Make ``/metrics`` report the preservation queue (signing_service.metrics)."""
    from signing_service import metrics

    metrics.set_queue_probe(queue_probe(services))
