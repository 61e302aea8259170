"""The scheduled purge: it runs inside the server (make_app) at start and
every interval, reconciliation first reads what it purges, a failing run is
retried with one warning line, and the counters for /metrics."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import make_app
from server.audit.log import AuditLog
from server.db.models import audit_log
from server.retention import metrics
from server.retention.appkeys import PURGE_JOB
from server.retention.job import PurgeJob
from server.retention.purge import AuditSink
from tests.server.registry.api_helpers import settings_for
from tests.server.retention.store import SHANGHAI, Events, local
from tests.services import free_port

Client = TestClient[web.Request, web.Application]
TIMEOUT_S = 30.0


async def _until(job: PurgeJob, done: Callable[[], bool]) -> None:
    """Waits run by run (no fixed sleeps) until ``done()`` holds."""
    async def wait() -> None:
        while not done():
            job.ran.clear()
            await job.ran.wait()

    await asyncio.wait_for(wait(), TIMEOUT_S)


async def test_the_server_purges_on_its_own(engine: sa.Engine, database_url: str, tmp_path: Path,
                                           aiohttp_client: Callable[[web.Application], Awaitable[Client]]) -> None:
    """No watermark at first: the server's reconciliation reads the events,
    then the job's next run (0.2 s later) purges the old ones."""
    store = Events(engine)
    store.gateway("gw-1", building="B1")
    today = datetime.now(UTC).astimezone(SHANGHAI).date()
    old_day = today - timedelta(days=200)
    store.many([{"at": local(old_day, h), "card": c} for h, c in ((1, "A"), (2, "B"), (3, "A"))])
    fresh = store.add(datetime.now(UTC) - timedelta(days=1))
    settings = settings_for(database_url, tmp_path).model_copy(update={
        "mqtt_url": f"mqtt://127.0.0.1:{free_port()}", "purge_interval_s": 0.2})
    client = await aiohttp_client(make_app(settings))
    job = client.app[PURGE_JOB]
    await _until(job, lambda: job.metrics.purged_total == 3)
    assert store.ids() == {fresh}
    assert store.daily() == {(old_day, "gw-1", "door-1", "card_read"): (3, 2, store.buildings["gw-1"])}
    with engine.connect() as conn:
        records = [json.loads(r) for r in conn.execute(sa.select(audit_log.c.record)).scalars()]
    purges = [r for r in records if r["action"] == "retention.purge"]
    assert [(r["actor"], r["size"]) for r in purges] == [("system:retention", 3)]
    assert purges[0]["detail"]["first_day"] == old_day.isoformat()
    text = metrics.render(job.metrics)
    assert "rentgate_events_purged_total 3" in text and job.metrics.last_purge_at is not None
    # And the server's /metrics carries them.
    served = await (await client.get("/metrics")).text()
    assert "rentgate_events_purged_total 3" in served and "rentgate_retention_last_purge_timestamp_seconds" in served


async def test_a_server_that_does_not_ingest_runs_no_purge(
        sqlite_url: str, sqlite_engine: sa.Engine, tmp_path: Path,
        aiohttp_client: Callable[[web.Application], Awaitable[Client]]) -> None:
    client = await aiohttp_client(make_app(settings_for(sqlite_url, tmp_path), ingest=False))
    assert PURGE_JOB not in client.app
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "retention-purge"]


class FlakyAudit(AuditLog):
    """The database is away for the first run."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.calls = 0

    def append_in(self, conn: sa.Connection, *entries: object, now: datetime | None = None) -> list[int]:
        self.calls += 1
        if self.calls == 1:
            raise sa.exc.OperationalError("INSERT INTO audit_log ...", {},
                                          Exception("server closed the connection\nunexpectedly"))
        return super().append_in(conn, *entries, now=now)  # type: ignore[arg-type]


async def test_a_failed_run_is_one_warning_line_and_is_retried(engine: sa.Engine,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    store = Events(engine)
    store.gateway("gw-1")
    store.many([{"at": local(date(2024, 1, 1))}, {"at": datetime.now(UTC)}])
    store.all_reconciled()
    audit = FlakyAudit(engine)

    def audit_log() -> AuditSink:
        return audit

    job = PurgeJob(engine, zone=SHANGHAI, retention_days=180, interval_s=3600, audit=audit_log,
                   first_run_after_s=0)
    with caplog.at_level(logging.WARNING, logger="server.retention.job"):
        job.start()
        try:
            await _until(job, lambda: job.metrics.purged_total == 1)
        finally:
            await job.stop()
    assert job.metrics.failures == 1 and job.metrics.runs == 1
    warnings = [r for r in caplog.records if r.name == "server.retention.job"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING and warnings[0].exc_info is None
    assert "\n" not in warnings[0].getMessage() and "unavailable" in warnings[0].getMessage()


async def test_without_an_audit_log_nothing_is_purged(engine: sa.Engine) -> None:
    store = Events(engine)
    store.many([{"at": local(date(2024, 1, 1))}, {"at": datetime.now(UTC)}])
    store.all_reconciled()

    def missing() -> AuditSink:
        from server.retention.setup import AuditLogMissing

        raise AuditLogMissing("no audit log")

    job = PurgeJob(engine, zone=SHANGHAI, retention_days=180, interval_s=3600, audit=missing)
    with pytest.raises(Exception, match="no audit log"):
        await job.run_once()
    assert len(store.ids()) == 2


async def test_stop_ends_a_long_purge_after_its_current_batch(engine: sa.Engine) -> None:
    store = Events(engine)
    store.many([{"at": local(date(2024, 1, 1), i / 100)} for i in range(500)] + [{"at": datetime.now(UTC)}])
    store.all_reconciled()
    audit = AuditLog(engine)
    job = PurgeJob(engine, zone=SHANGHAI, retention_days=180, interval_s=3600, audit=lambda: audit, batch=1,
                   first_run_after_s=0)
    job.start()
    await asyncio.wait_for(_first_batch(job), TIMEOUT_S)
    await asyncio.wait_for(job.stop(), TIMEOUT_S)
    assert 0 < job.metrics.purged_total < 500
    assert len(store.ids()) == 501 - job.metrics.purged_total


async def _first_batch(job: PurgeJob) -> None:
    while job.metrics.purged_total == 0:
        await asyncio.sleep(0.01)
