"""appearance images: seals and handwritten signatures per agency (issue 10)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The PNGs a visible signature shows (Nghị định 30/2020, Appendix I); the bytes are in
    # object storage, content-addressed, and profiles name the record.
    op.create_table(
        "appearance_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("officer", sa.String(length=255), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("width_px", sa.Integer(), nullable=False),
        sa.Column("height_px", sa.Integer(), nullable=False),
        sa.Column("width_mm", sa.Float(), nullable=False),
        sa.Column("height_mm", sa.Float(), nullable=False),
        sa.Column("storage_key", sa.String(length=512), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_appearance_images_agency_id_agencies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appearance_images")),
        sa.UniqueConstraint("agency_id", "name", name=op.f("uq_appearance_images_agency_id_name")),
    )
    op.create_index(op.f("ix_appearance_images_agency_id"), "appearance_images", ["agency_id"])
    op.create_index(op.f("ix_appearance_images_storage_key"), "appearance_images", ["storage_key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_appearance_images_storage_key"), table_name="appearance_images")
    op.drop_index(op.f("ix_appearance_images_agency_id"), table_name="appearance_images")
    op.drop_table("appearance_images")
