"""The periodic checkpoint task, signing at stop, checkpoint failures as
one WARNING line, and the functions the public routes expose."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from rentgate import signing
from server.audit import store
from server.audit.errors import AuditKeyUnavailable, AuditUnavailable
from server.audit.keys import AuditKey
from server.audit.log import AuditLog
from server.audit.public import latest_checkpoint, public_key_info
from server.db import migrate
from server.db.engine import create_engine
from tests.server.audit.helpers import entry, new_key

WAIT_S = 10.0


@pytest.fixture
def key() -> AuditKey:
    return new_key()


async def checkpointed(audit: AuditLog, engine: sa.Engine, size: int) -> store.Checkpoint:
    """Waits, run by run of the task, until a checkpoint covers ``size``."""
    async def covered() -> store.Checkpoint:
        while True:
            audit.checkpoint_ran.clear()
            with engine.connect() as conn:
                cp = store.latest_checkpoint(conn)
            if cp is not None and cp.size >= size:
                return cp
            await audit.checkpoint_ran.wait()

    return await asyncio.wait_for(covered(), WAIT_S)


async def test_the_task_signs_the_log_as_it_grows(engine: sa.Engine, key: AuditKey) -> None:
    audit = AuditLog(engine, key=key, checkpoint_interval_s=0.05)
    audit.start()
    try:
        await audit.append(entry(0), entry(1))
        first = await checkpointed(audit, engine, 2)
        await audit.append(entry(2))
        second = await checkpointed(audit, engine, 3)
    finally:
        await audit.stop()
    assert (first.size, second.size) == (2, 3) and first.key_id == key.key_id
    assert signing.verify(second.message(), second.signature, {key.key_id: key.public_key}, key.key_id)


async def test_stop_signs_what_the_last_interval_appended(engine: sa.Engine, key: AuditKey) -> None:
    audit = AuditLog(engine, key=key, checkpoint_interval_s=3600)
    audit.start()
    await audit.append(*(entry(n) for n in range(5)))
    await audit.stop()
    with engine.connect() as conn:
        cp = store.latest_checkpoint(conn)
    assert cp is not None and cp.size == 5


async def test_a_failing_checkpoint_is_one_warning_line_and_retried(tmp_path: Path, key: AuditKey,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_checkpoints RENAME TO away"))
    audit = AuditLog(engine, key=key, checkpoint_interval_s=0.05)
    audit.start()
    try:
        with caplog.at_level(logging.WARNING, logger="server.audit.log"):
            await audit.append(entry(0))
            for _ in range(2):
                audit.checkpoint_failed.clear()
                await asyncio.wait_for(audit.checkpoint_failed.wait(), WAIT_S)
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE away RENAME TO audit_checkpoints"))
        assert (await checkpointed(audit, engine, 1)).size == 1
    finally:
        await audit.stop()
        engine.dispose()
    warnings = [r for r in caplog.records if r.name == "server.audit.log"]
    assert len(warnings) >= 2 and all(r.levelno == logging.WARNING and r.exc_info is None for r in warnings)
    assert all("\n" not in r.getMessage() and "checkpoint failed" in r.getMessage() for r in warnings)


async def test_a_log_not_started_refuses_at_once(sqlite_engine: sa.Engine) -> None:
    with pytest.raises(AuditUnavailable):
        await AuditLog(sqlite_engine).append(entry(0))


async def test_a_burst_becomes_bounded_transactions(sqlite_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.audit import log as log_module

    monkeypatch.setattr(log_module, "MAX_BATCH", 10)
    audit = AuditLog(sqlite_engine)
    audit.start()
    try:
        await asyncio.gather(*(audit.append(entry(n), entry(n)) for n in range(50)))
    finally:
        await audit.stop()
    assert audit.commits >= 10


def test_latest_checkpoint_and_public_key_info(engine: sa.Engine, key: AuditKey) -> None:
    with engine.connect() as conn:
        assert latest_checkpoint(conn) is None
    from server.web.transactions import write_transaction

    with write_transaction(engine) as conn:
        store.append_in(conn, [entry(0)])
        store.make_checkpoint(conn, key)
    with engine.connect() as conn:
        doc = latest_checkpoint(conn)
    assert doc is not None and doc["size"] == 1 and doc["key_id"] == key.key_id
    assert doc["statement"] == f"rentgate-audit-checkpoint v1\n1\n{doc['head']}\n{doc['at']}\n"
    info = public_key_info(key)
    assert (info["key_id"], info["public_key"], info["algorithm"]) == (key.key_id, key.public_b64, "Ed25519")
    with pytest.raises(AuditKeyUnavailable) as refused:
        public_key_info(None)
    assert refused.value.code == "audit_key_unavailable"
