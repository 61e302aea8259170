"""A migrated SQLite database per test, copied from one migrated once per
session: these tests need many fresh databases and migrating each costs ~0.5 s."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.db.engine import create_engine
from tests.server.templates import migrated_sqlite


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_sqlite(tmp_path_factory.mktemp("auth-template"))


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
