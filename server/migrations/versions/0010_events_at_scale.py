"""reconciliation safe with concurrent ingest writers: events.txid, its
(txid, id) index and the watermark's last_txid

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HAS_TXID = sa.text("txid IS NOT NULL")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        # Existing rows get 0: all of them are committed, so they lie below
        # any horizon (server/reconcile/marks.py). A constant default is only
        # recorded in the catalogue (no rewrite of the table); the default
        # every later insert gets is then the inserting transaction's id.
        op.add_column("events", sa.Column("txid", sa.BigInteger(), server_default="0", nullable=True))
        op.alter_column("events", "txid", server_default=sa.text("(pg_current_xact_id()::text::bigint)"))
    else:
        op.add_column("events", sa.Column("txid", sa.BigInteger(), nullable=True))
    op.create_index("ix_events_txid_id", "events", ["txid", "id"], sqlite_where=_HAS_TXID,
                    postgresql_where=_HAS_TXID)
    # Each watermark (0, its old event id): the rows it has read are the
    # txid-0 rows up to that id, the ones it has not are after it.
    op.add_column("reconcile_state", sa.Column("last_txid", sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("reconcile_state") as batch:
        batch.drop_column("last_txid")
    op.drop_index("ix_events_txid_id", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("txid")
