"""signing idempotency (issue 12 fix): ``Idempotency-Key`` on ``POST /v1/signatures``

A client that lost the answer to a signing request (a dropped connection, a 503 from a
proxy) sends it again with the same key; the service answers with the first signature
instead of signing a second document (and taking a second result code). The key is unique
per agency (another agency's identical key is its own namespace); ``request_sha256`` is the
digest of the request (file, profile, options, codes) so that the same key with another
request is refused (409) instead of answered with the first one. Two-step signing's step 1
(``POST /v1/signatures/external``) keeps the same two columns on its session.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signatures") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(128), nullable=True))
        batch.add_column(sa.Column("request_sha256", sa.String(64), nullable=True))
        batch.create_unique_constraint(
            "uq_signatures_agency_id_idempotency_key", ["agency_id", "idempotency_key"]
        )

    # Two-step signing's create step (step 1): a resent step 1 answers the same session.
    with op.batch_alter_table("external_sessions") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(128), nullable=True))
        batch.add_column(sa.Column("request_sha256", sa.String(64), nullable=True))
        batch.create_unique_constraint(
            "uq_external_sessions_agency_id_idempotency_key", ["agency_id", "idempotency_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("external_sessions") as batch:
        batch.drop_constraint("uq_external_sessions_agency_id_idempotency_key", type_="unique")
        batch.drop_column("request_sha256")
        batch.drop_column("idempotency_key")
    with op.batch_alter_table("signatures") as batch:
        batch.drop_constraint("uq_signatures_agency_id_idempotency_key", type_="unique")
        batch.drop_column("request_sha256")
        batch.drop_column("idempotency_key")
