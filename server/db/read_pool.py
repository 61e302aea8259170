"""A pool of autocommit connections for reads on the hot paths: the login
check that runs before every request, the plate pages and the
coordinator's unit page.

On PostgreSQL this is an engine of its own. Autocommit spares each read a
BEGIN and a ROLLBACK; and psycopg forgets every prepared statement when its
connection rolls back (DEALLOCATE ALL), which a pool shared with
transactional code does on every checkout: in a pool where nothing ever
rolls back, hot statements stay prepared and are planned once per
connection, not once per request (together about two thirds of the unit
page's database time). SQLite prepares nothing across statements and has no
round trips: it keeps the one engine (a second one would be a second
database for an in-memory URL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import sqlalchemy as sa
from aiohttp import web

from server.appkeys import ENGINE, READ_ENGINE, SETTINGS
from server.db.engine import create_engine

T = TypeVar("T")


async def read_engine_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    if engine.dialect.name == "postgresql":
        # No ping before every checkout (one more round trip per read): a
        # connection that died with a database restart fails its first read
        # instead, and with_retry reads again on a fresh one.
        engine = create_engine(app[SETTINGS].database_url, isolation_level="AUTOCOMMIT", pool_pre_ping=False,
                               pool_recycle=3600)
        app[READ_ENGINE] = engine
        yield
        await asyncio.to_thread(engine.dispose)
    else:
        app[READ_ENGINE] = engine.execution_options(isolation_level="AUTOCOMMIT")
        yield


def read_only(app: web.Application) -> sa.Connection:
    """A connection for code that only reads (autocommit: each statement
    sees its own snapshot, which a page of lists can live with)."""
    engine = app.get(READ_ENGINE)
    if engine is None:
        return app[ENGINE].connect().execution_options(isolation_level="AUTOCOMMIT")
    return engine.connect()


def with_retry(read: Callable[[], T]) -> T:
    """``read()``, once more if its connection turned out to be dead (the
    pool has then been emptied of the old connections)."""
    try:
        return read()
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return read()
