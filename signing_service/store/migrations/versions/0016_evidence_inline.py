"""evidence kept in its row (issue 9, API cost): a signature's own evidence files

``manifest.json`` and the signature timestamp token are unique to one signature: nothing is
gained by storing them as content-addressed objects, and each cost an fsync'd object write
(file and directory) per signature. New rows keep them in ``signature_evidence_items.content``;
rows from before keep ``NULL`` there and their files stay objects (read as before).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signature_evidence_items") as batch:
        batch.add_column(sa.Column("content", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # Rows whose file is only in the row would lose it: refuse rather than drop evidence.
    bind = op.get_bind()
    inline = bind.execute(
        sa.text("SELECT COUNT(*) FROM signature_evidence_items WHERE content IS NOT NULL")
    ).scalar()
    if inline:
        raise RuntimeError(
            f"{inline} evidence files are kept only in signature_evidence_items.content; "
            "write them to the object store before downgrading"
        )
    with op.batch_alter_table("signature_evidence_items") as batch:
        batch.drop_column("content")
