"""gateways: the sync state of the terminals whose own user lists a gateway
keeps (issue 16, docs/terminal-sync.md)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the column type as it is at this revision.
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Plain ADD COLUMN of nullable columns: no rewrite, a short lock, on a
    # city's gateways table too (SQLite's batch copy is the small demo).
    with op.batch_alter_table("gateways") as batch:
        batch.add_column(sa.Column("terminals_health", JSON_DOC, nullable=True))
        batch.add_column(sa.Column("terminals_behind", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateways") as batch:
        batch.drop_column("terminals_behind")
        batch.drop_column("terminals_health")
