"""police clients and officers, their tokens' secrets, quotas, watches and
alerts; the hash-chained audit log with its head and signed checkpoints;
daily event aggregates that outlive the purge of raw events

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types as they were at this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ACTIVE_WATCH = sa.text("state = 'active'")
UNDELIVERED = sa.text("delivered_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "police_principals",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("client_id", sa.String(40), nullable=True),
        sa.Column("scopes", JSON_DOC, nullable=False),
        sa.Column("rate_per_min", sa.Integer(), nullable=False),
        sa.Column("daily_quota", sa.Integer(), nullable=False),
        sa.Column("jurisdiction", sa.String(32), nullable=True),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.CheckConstraint("kind IN ('client', 'officer')", name="ck_police_principals_kind"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_police_principals_user_id_users",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name="pk_police_principals"),
    )
    op.create_index("ix_police_principals_client_id", "police_principals", ["client_id"], unique=True)
    op.create_table(
        "police_client_secrets",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("secret_digest", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_police_client_secrets_user_id_users",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_police_client_secrets"),
    )
    op.create_index("ix_police_client_secrets_user_id", "police_client_secrets", ["user_id"])
    op.create_index("ix_police_client_secrets_secret_digest", "police_client_secrets", ["secret_digest"],
                    unique=True)
    op.create_table(
        "police_usage",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("subjects", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_police_usage_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "day", name="pk_police_usage"),
    )
    op.create_table(
        "police_watches",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("id_digest", sa.String(64), nullable=True),
        sa.Column("id_masked", sa.String(18), nullable=True),
        sa.Column("purpose", JSON_DOC, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("alerts", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint("state IN ('active', 'expired', 'withdrawn')", name="ck_police_watches_state"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_police_watches_user_id_users",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_police_watches"),
    )
    op.create_index("ix_police_watches_public_id", "police_watches", ["public_id"], unique=True)
    op.create_index("ix_police_watches_user_id_state", "police_watches", ["user_id", "state"])
    op.create_index("ix_police_watches_id_digest", "police_watches", ["id_digest"], sqlite_where=ACTIVE_WATCH,
                    postgresql_where=ACTIVE_WATCH)
    op.create_index("ix_police_watches_state_expires_at", "police_watches", ["state", "expires_at"])
    op.create_table(
        "police_alerts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("watch_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=True),
        sa.Column("door", sa.String(64), nullable=True),
        sa.Column("seen_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.ForeignKeyConstraint(["watch_id"], ["police_watches.id"], name="fk_police_alerts_watch_id_police_watches",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_police_alerts"),
        sa.UniqueConstraint("public_id", name="uq_police_alerts_public_id"),
        sa.UniqueConstraint("watch_id", "event_id", name="uq_police_alerts_watch_id_event_id"),
    )
    op.create_index("ix_police_alerts_next_attempt_at", "police_alerts", ["next_attempt_at"],
                    sqlite_where=UNDELIVERED, postgresql_where=UNDELIVERED)
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("subject", sa.String(80), nullable=True),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_subject_seq", "audit_log", ["subject", "seq"])
    op.create_index("ix_audit_log_actor_seq", "audit_log", ["actor", "seq"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("size", name="pk_audit_checkpoints"),
    )
    op.create_table(
        "event_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("door", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=True),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("credentials", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "gateway_id", "door", "kind", name="pk_event_daily"),
    )
    op.create_index("ix_event_daily_building_id_day", "event_daily", ["building_id", "day"])
    op.create_index("ix_cases_person_id_state", "cases", ["person_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_cases_person_id_state", "cases")
    for table in ("event_daily", "audit_checkpoints", "audit_head", "audit_log", "police_alerts", "police_watches",
                  "police_usage", "police_client_secrets", "police_principals"):
        op.drop_table(table)
