"""events, gateways, dead letters and sequence gaps

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types as they were at this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "gateways",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("online", sa.Boolean(), nullable=True),
        sa.Column("status_at", TS, nullable=True),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("boot_id", sa.String(64), nullable=True),
        sa.Column("outbox_depth", sa.BigInteger(), nullable=True),
        sa.Column("oldest_unsent_age_s", sa.Float(), nullable=True),
        sa.Column("dropped_total", sa.BigInteger(), nullable=True),
        sa.Column("rejected_total", sa.BigInteger(), nullable=True),
        sa.Column("devices_online", sa.Integer(), nullable=True),
        sa.Column("devices_total", sa.Integer(), nullable=True),
        sa.Column("max_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gateways"),
    )
    op.create_table(
        "events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("door", sa.String(64), nullable=True),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("stored_at", TS, nullable=False),
        sa.Column("credential_format", sa.String(16), nullable=True),
        sa.Column("credential_value", sa.String(128), nullable=True),
        sa.Column("data", JSON_DOC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("gateway_id", "seq", name="uq_events_gateway_id_seq"),
    )
    op.create_index("ix_events_occurred_at", "events", ["occurred_at"])
    op.create_index("ix_events_door_occurred_at", "events", ["door", "occurred_at"])
    op.create_table(
        "dead_letters",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload_encoding", sa.String(8), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("payload_size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("ix_dead_letters_gateway_id_seq", "dead_letters", ["gateway_id", "seq"])
    op.create_table(
        "seq_gaps",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("detected_at", TS, nullable=False),
        sa.Column("last_requested_at", TS, nullable=True),
        sa.Column("request_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("state", sa.String(8), server_default="open", nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.CheckConstraint("state IN ('open', 'filled', 'lost')", name="ck_seq_gaps_state"),
        sa.CheckConstraint("first_seq <= last_seq", name="ck_seq_gaps_range"),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name="fk_seq_gaps_gateway_id_gateways", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_seq_gaps"),
    )
    op.create_index("ix_seq_gaps_gateway_id_state_first_seq", "seq_gaps", ["gateway_id", "state", "first_seq"])


def downgrade() -> None:
    op.drop_table("seq_gaps")
    op.drop_table("dead_letters")
    op.drop_table("events")
    op.drop_table("gateways")
