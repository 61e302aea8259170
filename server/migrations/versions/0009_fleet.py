"""fleet: gateway enrolment codes, per-gateway identity and revocation,
remote configuration versions and staged rollouts, fleet health columns

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types as they were at this revision.
TS = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

_GATEWAY_COLUMNS: list[tuple[str, sa.types.TypeEngine[Any]]] = [
    ("enrolled_at", TS), ("hostname", sa.String(64)), ("certificate_serial", sa.String(64)), ("secret_hash", sa.String(200)),
    ("revoked_at", TS), ("clock_skew_s", sa.Float()), ("disk_free_bytes", sa.BigInteger()),
    ("disk_total_bytes", sa.BigInteger()), ("mem_rss_bytes", sa.BigInteger()),
    ("mem_available_bytes", sa.BigInteger()), ("devices_health", JSON_DOC), ("config_version", sa.BigInteger()),
    ("config_attempted", sa.BigInteger()), ("config_state", sa.String(16)), ("config_error", sa.Text()),
]


def upgrade() -> None:
    with op.batch_alter_table("gateways") as batch:
        for name, type_ in _GATEWAY_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.add_column(sa.Column("enrolled_by", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("revoked_by", sa.BigInteger(), nullable=True))
        batch.create_foreign_key("fk_gateways_enrolled_by_users", "users", ["enrolled_by"], ["id"])
        batch.create_foreign_key("fk_gateways_revoked_by_users", "users", ["revoked_by"], ["id"])
    op.create_table(
        "gateway_enrolments",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("code_digest", sa.String(64), nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("cancelled_at", TS, nullable=True),
        sa.Column("gateway_id", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["building_id"], ["buildings.id"], name="fk_gateway_enrolments_building_id_buildings"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_gateway_enrolments_created_by_users"),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateways.id"], name="fk_gateway_enrolments_gateway_id_gateways"),
        sa.PrimaryKeyConstraint("id", name="pk_gateway_enrolments"),
        sa.UniqueConstraint("code_digest", name="uq_gateway_enrolments_code_digest"),
    )
    op.create_index("ix_gateway_enrolments_building_id", "gateway_enrolments", ["building_id"])
    op.create_table(
        "config_rollouts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("changes", JSON_DOC, nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("gateways", JSON_DOC, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("comment", sa.String(200), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_config_rollouts_created_by_users"),
        sa.PrimaryKeyConstraint("id", name="pk_config_rollouts"),
    )
    op.create_table(
        "gateway_configs",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("settings", JSON_DOC, nullable=False),
        sa.Column("gate_s", sa.Float(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("comment", sa.String(200), nullable=True),
        sa.Column("rollout_id", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("outcome_at", TS, nullable=True),
        sa.Column("outcome_detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateways.id"], name="fk_gateway_configs_gateway_id_gateways"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_gateway_configs_created_by_users"),
        sa.ForeignKeyConstraint(["rollout_id"], ["config_rollouts.id"],
                                name="fk_gateway_configs_rollout_id_config_rollouts"),
        sa.PrimaryKeyConstraint("id", name="pk_gateway_configs"),
        sa.UniqueConstraint("gateway_id", "version", name="uq_gateway_configs_gateway_id_version"),
    )
    op.create_index("ix_gateway_configs_rollout_id", "gateway_configs", ["rollout_id"])


def downgrade() -> None:
    op.drop_index("ix_gateway_configs_rollout_id", table_name="gateway_configs")
    op.drop_table("gateway_configs")
    op.drop_table("config_rollouts")
    op.drop_index("ix_gateway_enrolments_building_id", table_name="gateway_enrolments")
    op.drop_table("gateway_enrolments")
    with op.batch_alter_table("gateways") as batch:
        batch.drop_constraint("fk_gateways_revoked_by_users", type_="foreignkey")
        batch.drop_constraint("fk_gateways_enrolled_by_users", type_="foreignkey")
        for name in ("revoked_by", "enrolled_by", *reversed([n for n, _ in _GATEWAY_COLUMNS])):
            batch.drop_column(name)
