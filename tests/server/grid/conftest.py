"""The grid tests' city, on SQLite and PostgreSQL (``scene``) or SQLite
alone (``sqlite_scene``, for tests whose SQL the first already covers).

Databases are copies of one migrated per session (a file copy on SQLite,
CREATE DATABASE ... TEMPLATE on PostgreSQL): migrating each one costs
1-3 s, which these tests would otherwise spend mostly on setup."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.db import migrate
from server.db.engine import create_engine
from tests.server.grid.scene import Scene
from tests.server.reconcile.world import World
from tests.server.templates import migrated_sqlite
from tests.services import PostgresCluster


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_sqlite(tmp_path_factory.mktemp("grid-template"))


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PostgresCluster) -> str:
    name = pg_cluster.create_database(f"grid_template_{uuid.uuid4().hex[:8]}")
    engine = create_engine(pg_cluster.url(name))
    migrate.upgrade(engine)
    engine.dispose()
    return name


def _admin(cluster: PostgresCluster, statement: str) -> None:
    import psycopg

    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(statement)  # names are made by the fixtures, not input


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "server.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "server.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    template: str = request.getfixturevalue("pg_template")
    name = f"t_{uuid.uuid4().hex[:16]}"
    _admin(cluster, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield cluster.url(name)
    finally:
        _admin(cluster, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def scene(engine: sa.Engine) -> Scene:
    return Scene(engine).build()


@pytest.fixture
def sqlite_scene(sqlite_engine: sa.Engine) -> Scene:
    return Scene(sqlite_engine).build()


@pytest.fixture
def world(engine: sa.Engine) -> World:
    """The reconciliation tests' small district, for the sweep's tasks."""
    w = World(engine)
    w.areas()
    return w
