"""camera evidence: which unit each gateway door serves (doors) and each unit
door camera's per-day figures (camera_days) for reconciliation

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-20
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types as they were at this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "doors",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("door", sa.String(64), nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=False),
        sa.Column("unit_id", sa.BigInteger(), nullable=True),
        sa.Column("camera", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateways.id"], name="fk_doors_gateway_id_gateways"),
        sa.ForeignKeyConstraint(["building_id"], ["buildings.id"], name="fk_doors_building_id_buildings"),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name="fk_doors_unit_id_units"),
        sa.PrimaryKeyConstraint("id", name="pk_doors"),
        sa.UniqueConstraint("gateway_id", "door", name="uq_doors_gateway_id_door"),
    )
    op.create_index("ix_doors_building_id", "doors", ["building_id"])
    op.create_index("ix_doors_unit_id", "doors", ["unit_id"])
    op.create_table(
        "camera_days",
        sa.Column("unit_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=False),
        sa.Column("entered", sa.Integer(), nullable=False),
        sa.Column("exited", sa.Integer(), nullable=False),
        sa.Column("unidentified", sa.Integer(), nullable=False),
        sa.Column("tailgating", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("peak", sa.Integer(), nullable=False),
        sa.Column("first_at", TS, nullable=False),
        sa.Column("last_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name="fk_camera_days_unit_id_units"),
        sa.PrimaryKeyConstraint("unit_id", "day", name="pk_camera_days"),
    )
    op.create_index("ix_camera_days_day", "camera_days", ["day"])


def downgrade() -> None:
    op.drop_index("ix_camera_days_day", "camera_days")
    op.drop_table("camera_days")
    op.drop_index("ix_doors_unit_id", "doors")
    op.drop_index("ix_doors_building_id", "doors")
    op.drop_table("doors")
