from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, make_url
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.orm import Session, sessionmaker

from signing_service import metrics

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_lock key of the schema migration (any constant the service uses for nothing else).
MIGRATION_LOCK_ID = 0x5167_6D69_6772  # "Sgmigr"


def private_sqlite_file(url: str) -> None:
    """Create the SQLite database file of ``url`` readable by this user only (0600), or take
    back group and other access from it, before SQLite opens it. SQLite gives its -wal and
    -shm files the database file's permissions. (Issue 9: ``var/metadata.db`` was
    world-readable, and it holds the API key hashes and the audit log.)"""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        info = os.fstat(fd)
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            os.fchmod(fd, info.st_mode & 0o600)
    finally:
        os.close(fd)


def _count_error(context: ExceptionContext) -> None:
    """Every error the driver raises (statements, connects, pre-pings) in the database error
    metric: ``disconnect`` (the server went away: a restart, a failover), ``integrity`` (a
    constraint refused a row), ``operational`` (locks, timeouts, resources), ``other``."""
    error = context.sqlalchemy_exception
    if context.is_disconnect:
        kind = "disconnect"
    elif isinstance(error, exc.IntegrityError):
        kind = "integrity"
    elif isinstance(error, exc.OperationalError):
        kind = "operational"
    else:
        kind = "other"
    metrics.database_error(kind)


def make_engine(url: str) -> Engine:
    engine = _make_engine(url)
    event.listen(engine, "handle_error", _count_error)
    return engine


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        # hide_parameters: an error's message (logged with its traceback) names the statement,
        # never its values: file names, dossier codes, audit details stay out of the logs.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # BEGIN IMMEDIATE takes the write lock up front: two transactions can never both
            # read the audit head and then race to extend the chain.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=10, hide_parameters=True
    )


def migrate(url: str) -> None:
    # Imported here: Alembic costs ~15 MB of memory that API worker processes never need.
    from alembic import command
    from alembic.config import Config

    if url.startswith("sqlite"):
        private_sqlite_file(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if not url.startswith("postgresql"):
        command.upgrade(cfg, "head")  # SQLite: one file, one process's (BEGIN IMMEDIATE)
        return
    # Replicas started together on a new database each migrate at startup: without this they
    # raced to create the same tables and all but one crashed (DuplicateTable, issue 13). A
    # session-level advisory lock, held on a connection of its own while Alembic runs on
    # another: the others wait, then find the schema at head and do nothing.
    engine = make_engine(url)
    try:
        with engine.connect() as lock:
            lock.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")
            try:
                command.upgrade(cfg, "head")
            finally:
                lock.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})")
    finally:
        engine.dispose()


def schema_revision(url: str) -> str | None:
    """The Alembic revision the database at ``url`` is at (None: no schema yet)."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


class Database:
    """The metadata database. ``audit_key`` (an :class:`signing_service.audit.AuditKey`)
    rides on every session (``session.info["audit_key"]``) so that audit entries written in
    any transaction are MACed; a database without it can read but not append to the log."""

    def __init__(self, url: str, *, audit_key: object | None = None) -> None:
        self.url = url
        self.engine = make_engine(url)
        info = {"audit_key": audit_key} if audit_key is not None else {}
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, info=info)

    def migrate(self) -> None:
        migrate(self.url)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: the request owns the transaction; commit or roll back whole."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def connection_lost(exc: BaseException) -> bool:
    """``exc`` (or what it was raised from) says the database connection failed or was lost
    (PostgreSQL stopped, restarting, failing over), not that a statement was wrong:
    SQLAlchemy's ``connection_invalidated`` or DisconnectionError, or psycopg's
    OperationalError (connection refused, server closed the connection, admin shutdown).

    Such a failure during COMMIT leaves the outcome unknown: the server may have committed
    before the connection went. Callers must then keep what the rows may point at (objects
    in the store) rather than remove it: an orphan object is found by `storage reconcile`,
    a removed object under a committed row is a lost document."""
    import psycopg
    from sqlalchemy.exc import DBAPIError, DisconnectionError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and (
            current.connection_invalidated or isinstance(current.orig, psycopg.OperationalError)
        ):
            return True
        if isinstance(current, psycopg.OperationalError | DisconnectionError):
            return True  # DisconnectionError: the pool found the connection gone
        current = current.__cause__ or current.__context__
    return False
