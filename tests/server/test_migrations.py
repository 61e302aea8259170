from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from rentgate.cli import main
from server.db import migrate
from server.db.models import metadata
from server.db.partitions import comparison_filter


def _compare_opts(conn: sa.Connection) -> dict[str, object]:
    # PostgreSQL's events partitions are not models, and some constraints
    # exist on one database only (server/db/partitions.py).
    return {"compare_type": True, "include_object": comparison_filter(conn.dialect.name)}


def test_migrations_build_exactly_the_models_schema(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts=_compare_opts(conn)), metadata)
    assert diff == []
    assert migrate.is_at_head(engine)


def test_db_commands_upgrade_and_report(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "current", "--database-url", sqlite_url, "--json"]) == 0
    before = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert before["current"] is None and before["at_head"] is False

    assert main(["db", "upgrade", "--database-url", sqlite_url, "--json"]) == 0
    upgraded = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert upgraded["to"] == migrate.head_revision()

    assert main(["db", "current", "--database-url", sqlite_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["at_head"] is True


def test_server_refuses_a_database_that_is_not_migrated(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "--database-url", sqlite_url, "--port", "0"]) == 2
    assert "rentgate db upgrade" in capsys.readouterr().err


def test_plates_and_patrols_revision_downgrades_and_upgrades_again(engine: sa.Engine) -> None:
    """0004 must come off cleanly (a failed deployment is rolled back) and
    go on again, keeping the tasks that existed before it."""
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO tasks (kind, state, summary, created_at, source) "
                             "VALUES ('verify_departure', 'reported', 'check', CURRENT_TIMESTAMP, 'case')"))
    migrate.downgrade(engine, "0003")
    columns = {c["name"] for c in sa.inspect(engine).get_columns("tasks")}
    assert "assignee_user_id" not in columns and "plates" not in sa.inspect(engine).get_table_names()
    migrate.upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT kind, source FROM tasks")).all()
        assert [tuple(row) for row in rows] == [("verify_departure", "case")]
        diff = compare_metadata(MigrationContext.configure(conn, opts=_compare_opts(conn)), metadata)
    assert diff == []
