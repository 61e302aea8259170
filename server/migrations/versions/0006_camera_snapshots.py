"""camera snapshots: the JPEG of a tailgating or unidentified entry,
uploaded by the gateway over HTTP and kept for the snapshot retention period

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types as they were at this revision.
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "event_snapshots",
        sa.Column("event_id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("stored_at", TS, nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_event_snapshots_event_id_events"),
        sa.PrimaryKeyConstraint("event_id", name="pk_event_snapshots"),
    )
    op.create_index("ix_event_snapshots_stored_at", "event_snapshots", ["stored_at"])


def downgrade() -> None:
    op.drop_index("ix_event_snapshots_stored_at", "event_snapshots")
    op.drop_table("event_snapshots")
