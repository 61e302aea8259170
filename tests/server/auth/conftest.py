"""A migrated SQLite database per test, copied from one migrated once per
session: these tests need many fresh databases and migrating each costs ~0.5 s."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.db.engine import create_engine


@pytest.fixture(scope="session")
def migrated_template(sqlite_template: Path) -> Path:
    """tests/server/conftest.py's: one migration for the whole session."""
    return sqlite_template


@pytest.fixture
def auth_db_url(migrated_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "server.db"
    shutil.copyfile(migrated_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def auth_engine(auth_db_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(auth_db_url)
    yield engine
    engine.dispose()
