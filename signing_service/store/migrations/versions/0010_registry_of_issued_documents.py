"""the registry of issued documents (issue 11): one row per signed document, its public id
(the QR code's link), hash, codes and status; the two-step session's chosen public id

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registered_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("dossier_code", sa.String(length=64), nullable=True),
        sa.Column("result_code", sa.String(length=64), nullable=True),
        sa.Column("document_number", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="in_force", nullable=False),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("superseded_by_id", sa.Integer(), nullable=True),
        sa.Column("previous_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_registered_documents_agency_id_agencies")
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_registered_documents_document_id_documents"),
        ),
        sa.ForeignKeyConstraint(
            ["superseded_by_id"],
            ["registered_documents.id"],
            name=op.f("fk_registered_documents_superseded_by_id_registered_documents"),
        ),
        sa.ForeignKeyConstraint(
            ["previous_id"],
            ["registered_documents.id"],
            name=op.f("fk_registered_documents_previous_id_registered_documents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registered_documents")),
        sa.UniqueConstraint("public_id", name=op.f("uq_registered_documents_public_id")),
        sa.UniqueConstraint("document_id", name=op.f("uq_registered_documents_document_id")),
    )
    op.create_index(
        op.f("ix_registered_documents_agency_id"), "registered_documents", ["agency_id"]
    )
    op.create_index(op.f("ix_registered_documents_sha256"), "registered_documents", ["sha256"])
    op.create_index(
        op.f("ix_registered_documents_previous_id"), "registered_documents", ["previous_id"]
    )
    with op.batch_alter_table("external_sessions") as batch:
        batch.add_column(sa.Column("public_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("registration", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("external_sessions") as batch:
        batch.drop_column("registration")
        batch.drop_column("public_id")
    op.drop_index(op.f("ix_registered_documents_previous_id"), table_name="registered_documents")
    op.drop_index(op.f("ix_registered_documents_sha256"), table_name="registered_documents")
    op.drop_index(op.f("ix_registered_documents_agency_id"), table_name="registered_documents")
    op.drop_table("registered_documents")
