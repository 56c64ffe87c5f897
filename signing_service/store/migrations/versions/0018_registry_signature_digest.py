"""registered_documents.signature_sha256: the document's last signature (SHA-256 over what its
/ByteRange covers and its signature value: registry_records.signature_key), so that a
registered document whose unsigned /Contents bytes were changed (padding, the hex case, a
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
        batch.add_column(sa.Column("signature_sha256", sa.String(64), nullable=True))
    op.create_index(
        op.f("ix_registered_documents_signature_sha256"),
        "registered_documents",
        ["signature_sha256"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_registered_documents_signature_sha256"), table_name="registered_documents"
    )
    with op.batch_alter_table("registered_documents") as batch:
        batch.drop_column("signature_sha256")
