"""preservation (issue 12 item 3): the job queue's schema on PostgreSQL, and the digest
algorithm of a version's newest timestamp for the plan's query

procrastinate's own schema (the SQL it ships, ``procrastinate/sql/schema.sql``) is applied in
a PostgreSQL schema of its own, ``procrastinate``: its tables, types and functions stay apart
from the service's (``compare_metadata`` over ``public`` still finds exactly the models), and
its connections name that schema in their ``search_path`` (services/preservation.py). Applied
once, by this revision (idempotent: skipped when the queue's table is already there). SQLite
has no queue: ``preservation run`` renews in-process there.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

QUEUE_SCHEMA = "procrastinate"


def _queue_schema_sql() -> str:
    from procrastinate.schema import SchemaManager

    return SchemaManager.get_schema()


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        # The digest algorithm of the newest timestamp (asn1crypto's name, e.g. "sha256"):
        # a version whose algorithm the operator marks for retirement is due for renewal.
        batch.add_column(sa.Column("archive_digest_algorithm", sa.String(32), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    exists = bind.execute(sa.text(f"SELECT to_regclass('{QUEUE_SCHEMA}.procrastinate_jobs')"))
    if exists.scalar() is not None:
        return
    raw = bind.connection.driver_connection
    # The schema's SQL is unqualified: create it with the queue's schema first on the path, in
    # this transaction only (set_config(..., true) ends with it), then put the path back.
    previous = raw.execute("SHOW search_path").fetchone()[0]
    raw.execute(f"CREATE SCHEMA IF NOT EXISTS {QUEUE_SCHEMA}")
    raw.execute(f"SELECT set_config('search_path', '{QUEUE_SCHEMA}', true)")
    # The simple query protocol (no parameters): the file is many statements, and its '%'
    # are literal.
    raw.execute(_queue_schema_sql())
    raw.execute("SELECT set_config('search_path', %s, true)", (previous,))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text(f"DROP SCHEMA IF EXISTS {QUEUE_SCHEMA} CASCADE"))
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("archive_digest_algorithm")
