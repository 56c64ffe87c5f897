"""API key lifecycle (operator keys, expiry, rotation) and the keyed audit chain

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

- ``api_clients.agency_id`` becomes nullable: an ``operator`` key belongs to no agency.
- ``api_clients.expires_at`` (expiry, or the end of a rotation's overlap) and
  ``api_clients.replaced_by`` (the key id that replaced a rotated key).
- ``audit_log.mac``, ``audit_head.mac`` and ``audit_head.keyed_from``: the chain's HMAC.

Existing audit entries are not MACed here: the audit key is operator configuration that a
schema migration does not (and must not) read. They keep ``mac = NULL`` until the chain is keyed
once, by :func:`signing_service.audit.key_chain` (run by ``signing-service migrate`` right
after this revision and by every service start-up that prepares the database), which MACs the
existing entries in order, records ``audit_head.keyed_from`` and appends an ``audit.keyed``
entry saying how many entries were keyed at upgrade and whether their plain hash chain was
intact at that moment.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.alter_column("agency_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("replaced_by", sa.String(length=32), nullable=True))

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))

    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("keyed_from", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_column("keyed_from")
        batch_op.drop_column("mac")

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("mac")

    # Operator keys have no agency: they cannot survive the downgrade.
    op.execute("DELETE FROM api_clients WHERE agency_id IS NULL")
    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.drop_column("replaced_by")
        batch_op.drop_column("expires_at")
        batch_op.alter_column("agency_id", existing_type=sa.Integer(), nullable=False)
