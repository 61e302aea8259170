"""The reconciliation service through a database outage: logged once when it
begins and once when it ends, no traceback per retry, and it carries on by
itself when the database is back (a real PostgreSQL refusing connections)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from server.db import migrate
from server.db.engine import create_engine
from server.ingest.store import CommitResult
from server.reconcile.runner import Reconciler
from server.reconcile.service import ReconcileService
from server.rules import CityRules
from tests.services import PostgresCluster


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(postgres_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def set_reachable(cluster: PostgresCluster, database: str, reachable: bool) -> None:
    """Let the database take connections again, or refuse them and cut the
    ones it has: to its clients, the server is gone."""
    admin = create_engine(cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(reachable).lower()}')
            if not reachable:
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database})
    finally:
        admin.dispose()


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for a condition nothing signals (the retries' own counter)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_an_outage_is_logged_when_it_begins_and_when_it_ends(
        engine: sa.Engine, pg_cluster: PostgresCluster, postgres_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    reconciler = Reconciler(engine, CityRules())
    service = ReconcileService(reconciler, sweep_interval_s=3600, publish=None)
    database = make_url(postgres_url).database
    assert database is not None
    service.start()
    try:
        await asyncio.wait_for(service.swept.wait(), 60)
        await asyncio.wait_for(service.caught_up.wait(), 60)
        caplog.clear()
        caplog.set_level(logging.DEBUG, logger="server.reconcile")
        set_reachable(pg_cluster, database, False)
        service.caught_up.clear()
        service.on_commit(CommitResult())
        await until(lambda: reconciler.outage.attempts >= 3)
        set_reachable(pg_cluster, database, True)
        await asyncio.wait_for(service.caught_up.wait(), 30)
    finally:
        set_reachable(pg_cluster, database, True)
        await service.stop()
    assert reconciler.outage.count == 1 and not reconciler.outage.down
    mine = [r for r in caplog.records if r.name.startswith("server.reconcile")]
    assert not [r for r in mine if r.levelno >= logging.ERROR or r.exc_info]
    warnings = [r.getMessage() for r in mine if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "unavailable" in warnings[0] and "OperationalError" in warnings[0]
    assert "back after" in warnings[1] and "failed attempts" in warnings[1]
