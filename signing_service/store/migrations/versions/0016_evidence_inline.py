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
        # For the operator (Vietnamese), and honest: no command writes the rows back to
        # object storage (red team 14 F4).
        raise RuntimeError(
            f"Không hạ lược đồ xuống 0015: {inline} tệp bằng chứng ký (manifest.json, dấu thời "
            "gian của chữ ký) chỉ nằm trong cột signature_evidence_items.content từ migration "
            "0016; bản 0015 không đọc cột này nên các tệp đó sẽ mất. Chưa có lệnh nào chép "
            "chúng sang kho đối tượng: hãy chạy phiên bản mới (0016 trở lên), hoặc khôi phục "
            "(`signing-service restore`) bản sao lưu làm trước khi nâng cấp (mất mọi thứ ghi "
            "sau đó). Cột content và các tệp trong đó giữ nguyên."
        )
    with op.batch_alter_table("signature_evidence_items") as batch:
        batch.drop_column("content")
