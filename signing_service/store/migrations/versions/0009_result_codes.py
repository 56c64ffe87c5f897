"""result codes on documents ({dossier_code}-KQ{n}, Nghị định 45/2020 Art. 14.3); the signed
document id a two-step session chose for its QR code

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("result_code", sa.String(length=64), nullable=True))
        batch.create_index(batch.f("ix_documents_result_code"), ["result_code"])
    with op.batch_alter_table("external_sessions") as batch:
        batch.add_column(sa.Column("result_code", sa.String(length=64), nullable=True))
        # The signed document's id, chosen at step 1 when its QR code links to it.
        batch.add_column(sa.Column("document_id", sa.String(length=36), nullable=True))
    # One row per dossier: the highest result number used; the next assigned is one more.
    op.create_table(
        "result_code_counters",
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("dossier_code", sa.String(length=64), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_result_code_counters_agency_id_agencies")
        ),
        sa.PrimaryKeyConstraint("agency_id", "dossier_code", name=op.f("pk_result_code_counters")),
    )


def downgrade() -> None:
    op.drop_table("result_code_counters")
    with op.batch_alter_table("external_sessions") as batch:
        batch.drop_column("document_id")
        batch.drop_column("result_code")
    with op.batch_alter_table("documents") as batch:
        batch.drop_index(batch.f("ix_documents_result_code"))
        batch.drop_column("result_code")
