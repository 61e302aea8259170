"""registry: areas, units, persons' identity, registrations' lifecycle, users,
history, reconciliation (presence, cases, tasks, rate snapshots)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types as they were at this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
OPEN = sa.text("state IN ('open', 'acknowledged')")


def _add_fk_column(table: str, column: str, ref: str) -> None:
    """A nullable BIGINT column referencing ``ref`` ("table.id"). Not in batch
    mode: rebuilding a referenced table on SQLite (buildings, registrations)
    would drop it under ON DELETE CASCADE rules of its dependants. SQLite takes
    a REFERENCES clause on ADD COLUMN for a nullable column; Alembic will not
    write one."""
    ref_table = ref.split(".")[0]
    name = f"fk_{table}_{column}_{ref_table}"
    if op.get_context().dialect.name == "sqlite":
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column} BIGINT CONSTRAINT {name} REFERENCES {ref_table} (id)")
    else:
        op.add_column(table, sa.Column(column, sa.BigInteger(), sa.ForeignKey(ref, name=name), nullable=True))


def _check(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("disabled_at", TS, nullable=True),
        sa.CheckConstraint(_check("role", ("admin", "landlord", "coordinator", "police")), name="role"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "auth_sessions",
        sa.Column("token_digest", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("label", sa.String(100), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("last_seen_at", TS, nullable=True),
        sa.CheckConstraint("kind IN ('cookie', 'token')", name="kind"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_auth_sessions_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_digest", name="pk_auth_sessions"),
    )
    op.create_index("ix_auth_sessions_user_id", "auth_sessions", ["user_id"])
    op.create_table(
        "areas",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("level", sa.String(12), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(_check("level", ("district", "street", "community", "grid")), name="level"),
        sa.ForeignKeyConstraint(["parent_id"], ["areas.id"], name="fk_areas_parent_id_areas"),
        sa.PrimaryKeyConstraint("id", name="pk_areas"),
        sa.UniqueConstraint("code", name="uq_areas_code"),
    )
    op.create_index("ix_areas_parent_id", "areas", ["parent_id"])

    op.add_column("buildings", sa.Column("code", sa.String(32), nullable=True))
    op.add_column("buildings", sa.Column("address", sa.String(300), nullable=True))
    _add_fk_column("buildings", "grid_id", "areas.id")
    op.add_column("buildings", sa.Column("landlord_name", sa.String(100), nullable=True))
    op.add_column("buildings", sa.Column("landlord_phone", sa.String(32), nullable=True))
    _add_fk_column("buildings", "landlord_user_id", "users.id")
    op.add_column("buildings", sa.Column("is_rental", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("buildings", sa.Column("pledge_signed_at", TS, nullable=True))
    op.add_column("buildings", sa.Column("rooms", sa.Integer(), nullable=True))
    op.add_column("buildings", sa.Column("updated_at", TS, nullable=True))
    op.create_index("ix_buildings_grid_id", "buildings", ["grid_id"])
    op.create_index("ix_buildings_landlord_user_id", "buildings", ["landlord_user_id"])
    op.create_index("ix_buildings_code", "buildings", ["code"], unique=True)

    op.create_table(
        "units",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("floor", sa.Integer(), nullable=True),
        sa.Column("area_m2", sa.Float(), nullable=False),
        sa.Column("rooms", sa.Integer(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("grade", sa.String(8), nullable=True),
        sa.Column("grade_score", sa.Integer(), nullable=True),
        sa.Column("grade_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=True),
        sa.CheckConstraint("grade IS NULL OR " + _check("grade", ("trusted", "normal", "watch", "strict")),
                           name="grade"),
        sa.ForeignKeyConstraint(["building_id"], ["buildings.id"], name="fk_units_building_id_buildings"),
        sa.PrimaryKeyConstraint("id", name="pk_units"),
        sa.UniqueConstraint("building_id", "number", name="uq_units_building_id_number"),
    )

    op.add_column("persons", sa.Column("id_digest", sa.String(64), nullable=True))
    op.add_column("persons", sa.Column("id_cipher", sa.Text(), nullable=True))
    op.add_column("persons", sa.Column("id_masked", sa.String(18), nullable=True))
    op.add_column("persons", sa.Column("sex", sa.String(1), nullable=True))
    op.add_column("persons", sa.Column("birth_year", sa.Integer(), nullable=True))
    op.add_column("persons", sa.Column("phone", sa.String(32), nullable=True))
    op.add_column("persons", sa.Column("origin", sa.String(100), nullable=True))
    op.add_column("persons", sa.Column("updated_at", TS, nullable=True))
    op.create_index("ix_persons_id_digest", "persons", ["id_digest"], unique=True)

    _add_fk_column("registrations", "unit_id", "units.id")
    # The CHECKs on status and source are added with the columns on
    # PostgreSQL; SQLite cannot add a CHECK without rebuilding the table, and
    # rebuilding `registrations` would take its credentials with it.
    op.add_column("registrations", sa.Column("status", sa.String(12), server_default="active", nullable=False))
    op.add_column("registrations", sa.Column("source", sa.String(12), server_default="access", nullable=False))
    op.add_column("registrations", sa.Column("end_reason", sa.String(32), nullable=True))
    op.add_column("registrations", sa.Column("confirmed_at", TS, nullable=True))
    _add_fk_column("registrations", "confirmed_by", "users.id")
    op.add_column("registrations", sa.Column("updated_at", TS, nullable=True))
    if op.get_context().dialect.name != "sqlite":
        op.create_check_constraint("status", "registrations",
                                   _check("status", ("pending", "active", "ended", "rejected")))
        op.create_check_constraint("source", "registrations",
                                   _check("source", ("landlord", "tenant", "coordinator", "import", "access")))
    # Registrations the access API ended before the registry existed.
    op.execute("UPDATE registrations SET status = 'ended', end_reason = 'deregistered' WHERE ended_at IS NOT NULL")
    op.create_index("ix_registrations_unit_id_status", "registrations", ["unit_id", "status"])
    op.create_index("ix_registrations_status_unit_id", "registrations", ["status", "unit_id"])

    # Nothing references credentials, so rebuilding it on SQLite is safe.
    with op.batch_alter_table("credentials") as batch:
        batch.add_column(sa.Column("unit_id", sa.BigInteger(), nullable=True))
        # Reconciliation's per-credential evidence (credential_unused cases).
        batch.add_column(sa.Column("last_seen_at", TS, nullable=True))
        batch.alter_column("person_id", existing_type=sa.BigInteger(), nullable=True)
        batch.alter_column("registration_id", existing_type=sa.BigInteger(), nullable=True)
        batch.create_foreign_key("fk_credentials_unit_id_units", "units", ["unit_id"], ["id"])
        batch.create_index("ix_credentials_person_id", ["person_id"])
        batch.create_index("ix_credentials_unit_id", ["unit_id"])

    op.create_table(
        "history",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(24), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("changes", JSON_DOC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_history"),
    )
    op.create_index("ix_history_entity_entity_id_id", "history", ["entity", "entity_id", "id"])
    op.create_table(
        "presence",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("unit_id", sa.BigInteger(), nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(24), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=True),
        sa.Column("credential_id", sa.BigInteger(), nullable=True),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("last_day", sa.Integer(), nullable=False),
        sa.Column("days_seen", sa.Integer(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name="fk_presence_unit_id_units"),
        sa.PrimaryKeyConstraint("id", name="pk_presence"),
        sa.UniqueConstraint("unit_id", "subject", name="uq_presence_unit_id_subject"),
    )
    op.create_index("ix_presence_person_id", "presence", ["person_id"])
    op.create_index("ix_presence_last_seen_at", "presence", ["last_seen_at"])
    op.create_table(
        "unknown_credentials",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("last_day", sa.Integer(), nullable=False),
        sa.Column("days_seen", sa.Integer(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["building_id"], ["buildings.id"],
                                name="fk_unknown_credentials_building_id_buildings"),
        sa.PrimaryKeyConstraint("id", name="pk_unknown_credentials"),
        sa.UniqueConstraint("building_id", "format", "value", name="uq_unknown_credentials_building_id_format_value"),
    )
    op.create_table(
        "reconcile_state",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_reconcile_state"),
    )
    op.create_table(
        "cases",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=True),
        sa.Column("unit_id", sa.BigInteger(), nullable=True),
        sa.Column("person_id", sa.BigInteger(), nullable=True),
        sa.Column("registration_id", sa.BigInteger(), nullable=True),
        sa.Column("credential_id", sa.BigInteger(), nullable=True),
        sa.Column("evidence_at", TS, nullable=True),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=True),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("resolution", sa.String(32), nullable=True),
        sa.Column("evidence", JSON_DOC, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(_check("kind", ("unregistered_occupant", "presumed_departure", "address_mismatch",
                                           "overcrowding", "unknown_credential", "credential_unused")),
                           name="kind"),
        sa.CheckConstraint(_check("state", ("open", "acknowledged", "resolved", "auto_closed")),
                           name="state"),
        sa.PrimaryKeyConstraint("id", name="pk_cases"),
    )
    op.create_index("uq_cases_open_kind_subject", "cases", ["kind", "subject"], unique=True,
                    sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index("ix_cases_state_kind", "cases", ["state", "kind"])
    op.create_index("ix_cases_building_id_state", "cases", ["building_id", "state"])
    op.create_index("ix_cases_unit_id_state", "cases", ["unit_id", "state"])
    op.create_table(
        "tasks",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("grid_id", sa.BigInteger(), nullable=True),
        sa.Column("building_id", sa.BigInteger(), nullable=True),
        sa.Column("unit_id", sa.BigInteger(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name="fk_tasks_case_id_cases"),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
    )
    op.create_index("ix_tasks_grid_id_state", "tasks", ["grid_id", "state"])
    op.create_index("ix_tasks_case_id", "tasks", ["case_id"])
    op.create_table(
        "rate_snapshots",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("area_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("counts", JSON_DOC, nullable=False),
        sa.Column("taken_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["area_id"], ["areas.id"], name="fk_rate_snapshots_area_id_areas",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_rate_snapshots"),
        sa.UniqueConstraint("area_id", "day", name="uq_rate_snapshots_area_id_day"),
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        # Undoing the REFERENCES columns added above needs SQLite tables
        # rebuilt with foreign keys off, which cannot happen inside the
        # migration's transaction; a partial downgrade would leave a schema
        # 0003 cannot upgrade again.
        raise NotImplementedError("downgrading below 0003 on SQLite is not supported: "
                                  "restore the copy of the database taken before upgrading")
    for table in ("rate_snapshots", "tasks", "cases", "reconcile_state", "unknown_credentials", "presence",
                  "history"):
        op.drop_table(table)
    op.drop_index("ix_credentials_unit_id", "credentials")
    op.drop_index("ix_credentials_person_id", "credentials")
    op.drop_constraint("fk_credentials_unit_id_units", "credentials", type_="foreignkey")
    op.drop_column("credentials", "unit_id")
    op.drop_column("credentials", "last_seen_at")
    # person_id and registration_id stay nullable: credentials issued to a
    # unit alone have neither, and 0002 has nowhere else to put them.
    op.drop_index("ix_registrations_status_unit_id", "registrations")
    op.drop_index("ix_registrations_unit_id_status", "registrations")
    op.drop_constraint("ck_registrations_status", "registrations", type_="check")
    op.drop_constraint("ck_registrations_source", "registrations", type_="check")
    for column in ("unit_id", "status", "source", "end_reason", "confirmed_at", "confirmed_by", "updated_at"):
        op.drop_column("registrations", column)
    op.drop_index("ix_persons_id_digest", "persons")
    for column in ("id_digest", "id_cipher", "id_masked", "sex", "birth_year", "phone", "origin", "updated_at"):
        op.drop_column("persons", column)
    for index in ("ix_buildings_code", "ix_buildings_landlord_user_id", "ix_buildings_grid_id"):
        op.drop_index(index, "buildings")
    for column in ("code", "address", "grid_id", "landlord_name", "landlord_phone", "landlord_user_id", "is_rental",
                   "pledge_signed_at", "rooms", "updated_at"):
        op.drop_column("buildings", column)
    op.drop_table("units")
    op.drop_table("areas")
    op.drop_table("auth_sessions")
    op.drop_table("users")
