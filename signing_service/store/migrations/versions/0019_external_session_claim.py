"""external_sessions.claim / claimed_at: which step 2 holds a session, and since when, so that a
session whose step 2 died with its process (the state left "completing") can be taken again
once the claim is older than the lease (services/external.py, CLAIM_LEASE_SECONDS), and a
step 2 that lost its claim cannot complete it.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("external_sessions") as batch:
        batch.add_column(sa.Column("claim", sa.String(32), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("external_sessions") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("claim")
