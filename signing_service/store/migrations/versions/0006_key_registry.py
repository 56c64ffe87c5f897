"""key registry: keys registered per agency by the operator; profiles name them

Profiles lose the free-text key URI, TSA URL and revocation switch that an agency administrator
could write (issue 9: a tenant-written ``key_uri`` opened another agency's key, loaded any
library, read any file or variable and made the server post anywhere). Existing rows move as
follows: an ``external:`` profile becomes a two-step profile; any other profile keeps its name,
level and stamp but has no key until the agency administrator chooses one of the keys the
operator registers (``signing-service key add``); signing with it is refused meanwhile
(``PROFILE_KEY_MISSING``). Key material named by the old URIs is not imported here: it would mean
reading the paths, PIN files and variables the URIs name, which is the attack. The development
bootstrap registers the demo keys through the registry and binds the demo profiles again. Every
profile takes the operator's default TSA. Profile names become unique per agency.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("certificate", sa.LargeBinary(), nullable=False),
        sa.Column("chain", sa.LargeBinary(), nullable=False),
        sa.Column("certificate_sha256", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.JSON(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("dev", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_signing_keys_agency_id_agencies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_keys")),
        sa.UniqueConstraint("uid", name=op.f("uq_signing_keys_uid")),
        sa.UniqueConstraint("agency_id", "name", name=op.f("uq_signing_keys_agency_id_name")),
        sa.UniqueConstraint("agency_id", "id", name=op.f("uq_signing_keys_agency_id_id")),
    )
    op.create_index(op.f("ix_signing_keys_agency_id"), "signing_keys", ["agency_id"])
    op.create_index(
        op.f("ix_signing_keys_certificate_sha256"), "signing_keys", ["certificate_sha256"]
    )

    with op.batch_alter_table("signing_profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("two_step", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("tsa", sa.String(length=64), nullable=True))

    profiles = sa.table(
        "signing_profiles",
        sa.column("key_uri", sa.Text()),
        sa.column("two_step", sa.Boolean()),
    )
    op.execute(
        profiles.update().where(profiles.c.key_uri.like("external:%")).values(two_step=sa.true())
    )

    with op.batch_alter_table("signing_profiles", schema=None) as batch_op:
        batch_op.drop_constraint("uq_signing_profiles_name", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_signing_profiles_agency_id_name"), ["agency_id", "name"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_signing_profiles_agency_id_key_id_signing_keys"),
            "signing_keys",
            ["agency_id", "key_id"],
            ["agency_id", "id"],
        )
        batch_op.create_index(batch_op.f("ix_signing_profiles_key_id"), ["key_id"])
        batch_op.drop_column("key_uri")
        batch_op.drop_column("tsa_url")
        batch_op.drop_column("check_revocation")


def downgrade() -> None:
    # Best effort: the URIs are gone. Two-step profiles get ``external:`` back; the others an
    # empty key source, which signing refuses.
    with op.batch_alter_table("signing_profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_uri", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("tsa_url", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("check_revocation", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    profiles = sa.table(
        "signing_profiles",
        sa.column("key_uri", sa.Text()),
        sa.column("two_step", sa.Boolean()),
    )
    op.execute(profiles.update().where(profiles.c.two_step).values(key_uri="external:"))
    with op.batch_alter_table("signing_profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_profiles_key_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_signing_profiles_agency_id_key_id_signing_keys"), type_="foreignkey"
        )
        batch_op.drop_constraint(batch_op.f("uq_signing_profiles_agency_id_name"), type_="unique")
        batch_op.create_unique_constraint("uq_signing_profiles_name", ["name"])
        batch_op.drop_column("tsa")
        batch_op.drop_column("two_step")
        batch_op.drop_column("key_id")
    op.drop_table("signing_keys")
