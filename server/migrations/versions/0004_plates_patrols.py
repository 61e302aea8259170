"""plates, patrols and grid work: door plates and their rejected scans,
uploaded photos, problem reports, patrols, coordinators' grids, and the task
workflow's columns and audit trail

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types as they were at this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ACTIVE = sa.text("revoked_at IS NULL")
HAS_CREDENTIAL = sa.text("credential_value IS NOT NULL")
NOT_ARCHIVED = sa.text("state <> 'archived'")
TASK_STATES = ("reported", "dispatched", "handled", "verified", "evaluated", "archived")
TASK_SOURCES = ("case", "report", "patrol", "manual")
REPORT_CATEGORIES = ("hazard", "overcrowding", "suspicious", "other")


def _check(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    # tasks is referenced by no other table, so SQLite's batch rebuild is safe.
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("source", sa.String(12), server_default="case", nullable=False))
        batch.add_column(sa.Column("created_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("assignee_user_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("report_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("patrol_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("evaluation", sa.String(12), nullable=True))
        batch.add_column(sa.Column("evaluation_note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("updated_at", TS, nullable=True))
        batch.create_foreign_key("fk_tasks_assignee_user_id_users", "users", ["assignee_user_id"], ["id"])
        batch.create_check_constraint("state", _check("state", TASK_STATES))
        batch.create_check_constraint("source", _check("source", TASK_SOURCES))
        batch.create_index("ix_tasks_assignee_user_id_state", ["assignee_user_id", "state"])
        batch.create_index("ix_tasks_unit_id_state", ["unit_id", "state"])
        batch.add_column(sa.Column("escalated_at", TS, nullable=True))
        batch.create_index("uq_tasks_open_case_id", ["case_id"], unique=True, sqlite_where=NOT_ARCHIVED,
                           postgresql_where=NOT_ARCHIVED)
        batch.create_index("ix_tasks_open_due_at", ["due_at"], sqlite_where=NOT_ARCHIVED,
                           postgresql_where=NOT_ARCHIVED)
    op.add_column("units", sa.Column("last_patrol_at", TS, nullable=True))
    op.create_table(
        "task_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=True),
        sa.Column("assignee_user_id", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("due_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_task_events_task_id_tasks"),
        sa.PrimaryKeyConstraint("id", name="pk_task_events"),
    )
    op.create_index("ix_task_events_task_id_id", "task_events", ["task_id", "id"])
    op.create_table(
        "grid_coordinators",
        sa.Column("grid_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("assigned_at", TS, nullable=False),
        sa.Column("assigned_by", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["grid_id"], ["areas.id"], name="fk_grid_coordinators_grid_id_areas",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_grid_coordinators_user_id_users",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("grid_id", "user_id", name="pk_grid_coordinators"),
    )
    op.create_index("ix_grid_coordinators_user_id", "grid_coordinators", ["user_id"])
    op.create_table(
        "plates",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("unit_id", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_reason", sa.String(32), nullable=True),
        sa.Column("revoked_by", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name="fk_plates_unit_id_units"),
        sa.PrimaryKeyConstraint("id", name="pk_plates"),
    )
    op.create_index("uq_plates_active_unit_id", "plates", ["unit_id"], unique=True,
                    sqlite_where=ACTIVE, postgresql_where=ACTIVE)
    op.create_index("ix_plates_unit_id", "plates", ["unit_id"])
    op.create_table(
        "scan_rejections",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("reason", sa.String(24), nullable=False),
        sa.Column("token_excerpt", sa.String(64), nullable=False),
        sa.Column("plate_id", sa.BigInteger(), nullable=True),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_scan_rejections"),
    )
    op.create_index("ix_scan_rejections_at", "scan_rejections", ["at"])
    op.create_table(
        "attachments",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_attachments"),
    )
    op.create_index("ix_attachments_sha256", "attachments", ["sha256"])
    op.create_table(
        "problem_reports",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("unit_id", sa.BigInteger(), nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=False),
        sa.Column("plate_id", sa.BigInteger(), nullable=True),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("contact_phone", sa.String(32), nullable=True),
        sa.Column("attachment_id", sa.BigInteger(), nullable=True),
        sa.Column("client_digest", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(_check("category", REPORT_CATEGORIES), name="category"),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name="fk_problem_reports_unit_id_units"),
        sa.ForeignKeyConstraint(["attachment_id"], ["attachments.id"],
                                name="fk_problem_reports_attachment_id_attachments"),
        sa.PrimaryKeyConstraint("id", name="pk_problem_reports"),
    )
    op.create_index("ix_problem_reports_unit_id_created_at", "problem_reports", ["unit_id", "created_at"])
    op.create_index("ix_problem_reports_attachment_id", "problem_reports", ["attachment_id"])
    op.create_table(
        "patrols",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("unit_id", sa.BigInteger(), nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=False),
        sa.Column("grid_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("occupants_observed", sa.Integer(), nullable=True),
        sa.Column("seen_person_ids", JSON_DOC, nullable=False),
        sa.Column("checklist", JSON_DOC, nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("attachment_ids", JSON_DOC, nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name="fk_patrols_unit_id_units"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_patrols_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_patrols"),
    )
    op.create_index("ix_patrols_unit_id_at", "patrols", ["unit_id", "at"])
    op.create_index("ix_patrols_user_id_at", "patrols", ["user_id", "at"])
    op.create_index("ix_events_credential_value_occurred_at", "events", ["credential_value", "occurred_at"],
                    sqlite_where=HAS_CREDENTIAL, postgresql_where=HAS_CREDENTIAL)


def downgrade() -> None:
    op.drop_index("ix_events_credential_value_occurred_at", table_name="events")
    for table in ("patrols", "problem_reports", "attachments", "scan_rejections", "plates", "grid_coordinators",
                  "task_events"):
        op.drop_table(table)
    # Not batch mode: rebuilding units on SQLite would run into every table
    # that references it; SQLite (3.35+) drops a plain column in place.
    op.drop_column("units", "last_patrol_at")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index("ix_tasks_open_due_at")
        batch.drop_index("uq_tasks_open_case_id")
        batch.drop_column("escalated_at")
        batch.drop_index("ix_tasks_unit_id_state")
        batch.drop_index("ix_tasks_assignee_user_id_state")
        batch.drop_constraint(op.f("ck_tasks_source"), type_="check")
        batch.drop_constraint(op.f("ck_tasks_state"), type_="check")
        batch.drop_constraint(op.f("fk_tasks_assignee_user_id_users"), type_="foreignkey")
        for column in ("updated_at", "evaluation_note", "evaluation", "patrol_id", "report_id", "assignee_user_id",
                       "created_by", "source"):
            batch.drop_column(column)
