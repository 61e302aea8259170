"""Appending: in a caller's transaction, group-committed from many tasks,
and from two logs on one database as two server processes would."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.audit.entries import AuditEntry
from server.audit.errors import AuditUnavailable, InvalidAuditEntry
from server.audit.log import AuditLog
from server.db import migrate
from server.db.engine import create_engine
from server.db.models import audit_log
from server.web.transactions import write_transaction
from tests.server.audit.helpers import assert_one_chain, entry


def test_append_in_chains_inside_the_callers_transaction(engine: sa.Engine) -> None:
    log = AuditLog(engine)
    with write_transaction(engine) as conn:
        assert log.append_in(conn, entry(0), entry(1)) == [0, 1]
    with write_transaction(engine) as conn:
        assert log.append_in(conn, entry(2)) == [2]
    assert_one_chain(engine, 3)
    with engine.connect() as conn:
        record = json.loads(conn.execute(sa.select(audit_log.c.record).where(audit_log.c.seq == 2)).scalar_one())
    assert record["seq"] == 2 and record["detail"] == {"n": 2, "note": "地址核查"}
    assert record["at"].endswith("Z") and len(record["at"]) == len("2026-12-05T08:30:00.000000Z")


def test_append_in_rolls_back_with_the_caller(engine: sa.Engine) -> None:
    log = AuditLog(engine)
    with pytest.raises(RuntimeError), write_transaction(engine) as conn:
        log.append_in(conn, entry(0))
        raise RuntimeError("the caller's work failed")
    with write_transaction(engine) as conn:
        assert log.append_in(conn, entry(1)) == [0]
    assert_one_chain(engine, 1)


async def test_many_tasks_append_one_chain_in_few_commits(engine: sa.Engine) -> None:
    log = AuditLog(engine)
    log.start()
    try:
        results = await asyncio.gather(*(log.append(entry(n), entry(n + 1000)) for n in range(200)))
    finally:
        await log.stop()
    seqs = sorted(s for pair in results for s in pair)
    assert seqs == list(range(400))
    assert all(b == a + 1 for a, b in results)  # one call's entries stay together
    assert log.commits < 200  # grouped, not one commit per call
    assert_one_chain(engine, 400)


async def test_two_logs_on_one_postgresql_database_chain_in_one_order(postgres_url: str) -> None:
    engines = [create_engine(postgres_url) for _ in range(2)]
    migrate.upgrade(engines[0])
    logs = [AuditLog(e) for e in engines]
    for log in logs:
        log.start()
    try:
        await asyncio.gather(*(logs[n % 2].append(entry(n)) for n in range(600)))
    finally:
        for log in logs:
            await log.stop()
    assert_one_chain(engines[0], 600)
    for e in engines:
        e.dispose()


def test_two_processes_threads_on_sqlite_chain_in_one_order(sqlite_url: str) -> None:
    """Two engines (two connection pools, as two processes have) appending in
    threads at once: SQLite's write lock orders them."""
    import threading

    engines = [create_engine(sqlite_url) for _ in range(2)]
    migrate.upgrade(engines[0])

    def work(engine: sa.Engine, base: int) -> None:
        log = AuditLog(engine)
        for n in range(100):
            with write_transaction(engine) as conn:
                log.append_in(conn, entry(base + n))

    threads = [threading.Thread(target=work, args=(e, i * 1000)) for i, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_one_chain(engines[0], 200)
    for e in engines:
        e.dispose()


@pytest.mark.parametrize("bad", [
    AuditEntry(actor="", action="x"),
    AuditEntry(actor="a" * 65, action="x"),
    AuditEntry(actor="a", action="x", subject="s" * 81),
    AuditEntry(actor="a", action="x", status=-1),
    AuditEntry(actor="a", action="x", size=True),
    AuditEntry(actor="a", action="x", detail={"when": Path("/")}),
    AuditEntry(actor="a", action="x", detail={"nan": float("nan")}),
    AuditEntry(actor="a", action="x", detail={"lone": "\udc80"}),
    AuditEntry(actor="a", action="x", detail={1: "int key"}),  # type: ignore[dict-item]
])
async def test_a_bad_entry_fails_its_own_caller_only(sqlite_engine: sa.Engine, bad: AuditEntry) -> None:
    log = AuditLog(sqlite_engine)
    log.start()
    try:
        good = asyncio.ensure_future(log.append(entry(0)))
        with pytest.raises(InvalidAuditEntry):
            await log.append(bad)
        assert await good == [0]
    finally:
        await log.stop()
    assert_one_chain(sqlite_engine, 1)


async def test_stop_flushes_what_is_queued_then_refuses(sqlite_engine: sa.Engine) -> None:
    log = AuditLog(sqlite_engine)
    log.start()
    pending = [asyncio.ensure_future(log.append(entry(n))) for n in range(50)]
    await asyncio.sleep(0)  # let them enqueue
    await log.stop()
    assert sorted(s for p in pending for s in p.result()) == list(range(50))
    with pytest.raises(AuditUnavailable):
        await log.append(entry(99))
    assert_one_chain(sqlite_engine, 50)


async def test_a_database_outage_fails_the_batch_with_one_warning_and_recovers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    engine = create_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_log RENAME TO audit_log_away"))
    log = AuditLog(engine)
    log.start()
    try:
        with caplog.at_level(logging.WARNING, logger="server.audit.log"):
            with pytest.raises(AuditUnavailable):
                await log.append(entry(0))
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and warnings[0].exc_info is None
        assert "\n" not in warnings[0].getMessage()
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE audit_log_away RENAME TO audit_log"))
        assert await log.append(entry(1)) == [0]
    finally:
        await log.stop()
    engine.dispose()
    assert_one_chain(create_engine(url), 1)


async def test_the_app_runs_the_log_without_ingest_and_signs_at_stop(
        sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path, aiohttp_server: Any) -> None:
    from server.app import make_app
    from server.audit.appkeys import AUDIT
    from server.db.models import audit_checkpoints
    from server.settings import ServerSettings

    app = make_app(ServerSettings(database_url=sqlite_url), ingest=False)
    server = await aiohttp_server(app)
    assert await app[AUDIT].append(entry(0)) == [0]
    assert app[AUDIT].key is not None and (tmp_path / "audit-key.pem").exists()
    await server.close()
    assert_one_chain(sqlite_engine, 1)
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(audit_checkpoints.c.size)).scalars().all() == [1]
