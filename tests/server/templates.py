"""A migrated SQLite database made once and copied per test: migrating each
test's database costs 1-3 s, mostly setup."""

from __future__ import annotations

from pathlib import Path

from server.db import migrate
from server.db.engine import create_engine


def migrated_sqlite(folder: Path) -> Path:
    path = folder / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    with engine.connect() as conn:  # fold the WAL into the file so one copy is complete
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path
