"""document versions (issue 12 items 2 and 4): an extended signed document is a new row
naming the version it extends (unique: the versions form one line), its level, and the expiry
of its newest timestamp's TSA certificate (preservation plans with a query on it)

Revision ID: 0013
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
# 0011 in this branch; relinked to 0012 (evidence) when the lanes are merged.
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("previous_version_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("level", sa.String(length=8), nullable=True))
        batch.add_column(
            sa.Column("archive_tsa_not_after", sa.DateTime(timezone=True), nullable=True)
        )
        batch.create_unique_constraint(
            batch.f("uq_documents_previous_version_id"), ["previous_version_id"]
        )
        batch.create_foreign_key(
            batch.f("fk_documents_previous_version_id_documents"),
            "documents",
            ["previous_version_id"],
            ["id"],
        )
        batch.create_index(batch.f("ix_documents_archive_tsa_not_after"), ["archive_tsa_not_after"])


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_index(batch.f("ix_documents_archive_tsa_not_after"))
        batch.drop_constraint(
            batch.f("fk_documents_previous_version_id_documents"), type_="foreignkey"
        )
        batch.drop_constraint(batch.f("uq_documents_previous_version_id"), type_="unique")
        batch.drop_column("archive_tsa_not_after")
        batch.drop_column("level")
        batch.drop_column("version")
        batch.drop_column("previous_version_id")
