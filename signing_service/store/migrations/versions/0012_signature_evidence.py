"""evidence per signature (issue 12): the files the pre-signing check relied on, retention per
agency and document kind, legal holds

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signature_evidence",
        sa.Column("signature_id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("document_kind", sa.String(length=16), nullable=False),
        sa.Column("check_status", sa.String(length=16), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("signer", sa.JSON(), nullable=True),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
            name=op.f("fk_signature_evidence_agency_id_agencies"),
        ),
        sa.ForeignKeyConstraint(
            ["signature_id"],
            ["signatures.id"],
            name=op.f("fk_signature_evidence_signature_id_signatures"),
        ),
        sa.PrimaryKeyConstraint("signature_id", name=op.f("pk_signature_evidence")),
    )
    op.create_index(op.f("ix_signature_evidence_agency_id"), "signature_evidence", ["agency_id"])
    op.create_table(
        "signature_evidence_items",
        sa.Column("signature_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["signature_id"],
            ["signature_evidence.signature_id"],
            name=op.f("fk_signature_evidence_items_signature_id_signature_evidence"),
        ),
        sa.PrimaryKeyConstraint("signature_id", "name", name=op.f("pk_signature_evidence_items")),
    )
    op.create_index(
        op.f("ix_signature_evidence_items_sha256"), "signature_evidence_items", ["sha256"]
    )
    op.create_table(
        "evidence_retention",
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("document_kind", sa.String(length=16), nullable=False),
        sa.Column("years", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
            name=op.f("fk_evidence_retention_agency_id_agencies"),
        ),
        sa.PrimaryKeyConstraint("agency_id", "document_kind", name=op.f("pk_evidence_retention")),
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("target_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("set_by", sa.String(length=255), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_legal_holds_agency_id_agencies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
        sa.UniqueConstraint("target", "target_id", name="uq_legal_holds_target"),
    )
    op.create_index(op.f("ix_legal_holds_agency_id"), "legal_holds", ["agency_id"])
    op.create_index(op.f("ix_legal_holds_target_id"), "legal_holds", ["target_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_legal_holds_target_id"), table_name="legal_holds")
    op.drop_index(op.f("ix_legal_holds_agency_id"), table_name="legal_holds")
    op.drop_table("legal_holds")
    op.drop_table("evidence_retention")
    op.drop_index(op.f("ix_signature_evidence_items_sha256"), table_name="signature_evidence_items")
    op.drop_table("signature_evidence_items")
    op.drop_index(op.f("ix_signature_evidence_agency_id"), table_name="signature_evidence")
    op.drop_table("signature_evidence")
