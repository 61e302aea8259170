"""The grid tests' city, on SQLite and PostgreSQL (``scene``) or SQLite
alone (``sqlite_scene``, for tests whose SQL the first already covers).

The databases are tests/server/conftest.py's: copies of one migrated per
session."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.server.grid.scene import Scene
from tests.server.reconcile.world import World


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
