"""registered_documents.covered_sha256: the SHA-256 of the bytes the document's last signature
covers, so that a registered document whose unsigned /Contents bytes were changed (padding, a
timestamp token replaced or removed) is still found (new user 22 #1). Nullable: records
registered before this revision are found by their file's SHA-256 only.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registered_documents") as batch:
        batch.add_column(sa.Column("covered_sha256", sa.String(64), nullable=True))
    op.create_index(
        "ix_registered_documents_covered_sha256", "registered_documents", ["covered_sha256"]
    )


def downgrade() -> None:
    op.drop_index("ix_registered_documents_covered_sha256", table_name="registered_documents")
    with op.batch_alter_table("registered_documents") as batch:
        batch.drop_column("covered_sha256")
