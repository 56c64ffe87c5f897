"""report links of the citizen's page (issue 11 fixes F2, F3, F12): the result shown and the
sealed PDF, shared by every worker process

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_links",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.Column("file_name", sa.String(length=64), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_report_links")),
    )
    op.create_index(op.f("ix_report_links_expires_at"), "report_links", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_report_links_expires_at"), table_name="report_links")
    op.drop_table("report_links")
