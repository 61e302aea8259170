"""Write transactions that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """On SQLite, take the write lock up front: a transaction that reads and
    then writes fails at once ("database is locked") if ingest wrote in
    between, where BEGIN IMMEDIATE simply waits its turn."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
