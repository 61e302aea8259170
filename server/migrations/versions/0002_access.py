"""buildings, persons, registrations, credentials and allowlist versions

Revision ID: 0002
Revises: 0001
Create Date: 2024-07-01
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types as they were at this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ACTIVE = sa.text("revoked_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "buildings",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_buildings"),
    )
    op.create_table(
        "persons",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_persons"),
    )
    op.create_table(
        "registrations",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=False),
        sa.Column("valid_from", TS, nullable=False),
        sa.Column("valid_until", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_registrations_person_id_persons"),
        sa.ForeignKeyConstraint(["building_id"], ["buildings.id"], name="fk_registrations_building_id_buildings"),
        sa.PrimaryKeyConstraint("id", name="pk_registrations"),
    )
    op.create_index("ix_registrations_building_id", "registrations", ["building_id"])
    op.create_index("ix_registrations_person_id", "registrations", ["person_id"])
    op.create_table(
        "credentials",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=False),
        sa.Column("registration_id", sa.BigInteger(), nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("doors", JSON_DOC, nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_reason", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_credentials_person_id_persons"),
        sa.ForeignKeyConstraint(["registration_id"], ["registrations.id"],
                                name="fk_credentials_registration_id_registrations"),
        sa.ForeignKeyConstraint(["building_id"], ["buildings.id"], name="fk_credentials_building_id_buildings"),
        sa.PrimaryKeyConstraint("id", name="pk_credentials"),
    )
    op.create_index("uq_credentials_active_building_id_format_value", "credentials",
                    ["building_id", "format", "value"], unique=True, sqlite_where=ACTIVE, postgresql_where=ACTIVE)
    op.create_index("ix_credentials_registration_id", "credentials", ["registration_id"])
    op.create_index("ix_credentials_building_id_revoked_at", "credentials", ["building_id", "revoked_at"])
    op.create_table(
        "allowlist_versions",
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("published_version", sa.BigInteger(), nullable=True),
        sa.Column("published_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateways.id"], name="fk_allowlist_versions_gateway_id_gateways",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("gateway_id", name="pk_allowlist_versions"),
    )
    # Not in batch mode: rebuilding `gateways` on SQLite would drop the table
    # under ON DELETE CASCADE and take seq_gaps with it. SQLite takes a
    # REFERENCES clause on ADD COLUMN for a nullable column, but Alembic will
    # not write one.
    op.add_column("gateways", sa.Column("allowlist_version", sa.BigInteger(), nullable=True))
    if op.get_context().dialect.name == "sqlite":
        op.execute("ALTER TABLE gateways ADD COLUMN building_id BIGINT CONSTRAINT fk_gateways_building_id_buildings "
                   "REFERENCES buildings (id)")
    else:
        op.add_column("gateways", sa.Column(
            "building_id", sa.BigInteger(),
            sa.ForeignKey("buildings.id", name="fk_gateways_building_id_buildings"),
            nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateways") as batch:
        batch.drop_column("building_id")
        batch.drop_column("allowlist_version")
    op.drop_table("allowlist_versions")
    op.drop_table("credentials")
    op.drop_table("registrations")
    op.drop_table("persons")
    op.drop_table("buildings")
