"""anonymous verification counters

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Anonymous verifications are counted per day (Vietnam time) and outcome instead of
    # being written to the audit log one by one (issue 9).
    op.create_table(
        "verification_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "outcome", name=op.f("pk_verification_counts")),
    )


def downgrade() -> None:
    op.drop_table("verification_counts")
