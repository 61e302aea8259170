"""A migrated database per test, on SQLite and (where it runs) PostgreSQL.

``database_url`` and ``sqlite_url`` name an empty database; ``engine`` and
``sqlite_engine`` hand out that database migrated to head. Migrating costs
1.5-3 s a database (more than most of these tests take), so the migrated
database is a copy of one migrated once per session: a file copy on SQLite,
``CREATE DATABASE ... TEMPLATE`` on PostgreSQL (well under half a second).
A database that is not empty when ``engine`` gets it (a fixture put
something there first) is migrated in place as before."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from server.db import migrate
from server.db.engine import create_engine
from tests.server.templates import migrated_sqlite
from tests.services import PostgresCluster


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to head, to be copied, never opened by a test."""
    return migrated_sqlite(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PostgresCluster) -> str:
    """A PostgreSQL database migrated to head, the template of the others.
    Nothing stays connected to it: CREATE DATABASE ... TEMPLATE needs that."""
    name = pg_cluster.create_database(f"template_{uuid.uuid4().hex[:8]}")
    engine = create_engine(pg_cluster.url(name))
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return name


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'server.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'server.db'}"


def _pg_admin(cluster: PostgresCluster, statement: str) -> None:
    import psycopg

    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(statement.encode())  # names are made by the fixtures, not input


def _pg_is_empty(cluster: PostgresCluster, dbname: str) -> bool:
    import psycopg

    with psycopg.connect(cluster.dsn(dbname)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
        ).fetchone()
    return row is not None and row[0] == 0


def migrated(request: pytest.FixtureRequest, url: str) -> None:
    """Make the empty database at ``url`` a migrated one: a copy of the
    session's template, or (not empty) an upgrade in place."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        path = Path(parsed.database)
        if not path.exists() or path.stat().st_size == 0:
            template: Path = request.getfixturevalue("sqlite_template")
            shutil.copyfile(template, path)
            return
    elif parsed.get_backend_name() == "postgresql" and parsed.database:
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        if parsed.port == cluster.port and _pg_is_empty(cluster, parsed.database):
            pg_template: str = request.getfixturevalue("pg_template")
            # Same name, so the URL the test holds now names the migrated copy;
            # make_postgres_url still drops it at teardown.
            _pg_admin(cluster, f'DROP DATABASE "{parsed.database}" WITH (FORCE)')
            _pg_admin(cluster, f'CREATE DATABASE "{parsed.database}" TEMPLATE "{pg_template}"')
            return
    engine = create_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


@pytest.fixture
def engine(request: pytest.FixtureRequest, database_url: str) -> Iterator[sa.Engine]:
    migrated(request, database_url)
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[sa.Engine]:
    migrated(request, sqlite_url)
    engine = create_engine(sqlite_url)
    yield engine
    engine.dispose()
