"""`rentgate server --role ...`: what each role's process runs and serves,
and how the background process learns of events another process stored
(docs/scaling.md)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from rentgate import wire
from rentgate.cli import main
from server.access.routes import ACCESS
from server.app import make_app
from server.cli import _worker_client_id
from server.db import migrate
from server.db.engine import create_engine
from server.ingest.appkeys import INGEST
from server.ingest.feed import COMMITS, CommitFeed, CommitNotifier
from server.ingest.store import CommitResult, EventStore
from server.reconcile.appkeys import SERVICE
from server.retention.appkeys import PURGE_JOB
from server.settings import OTHER_VARIABLES, ServerSettings, read_settings
from tests.server.helpers import batch, card_read
from tests.server.mqtt_gateway import TIMEOUT, FakeGateway
from tests.server.registry.api_helpers import settings_for
from tests.services import Mosquitto

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def _settings(database_url: str, tmp_path: Path, mosquitto: Mosquitto, role: str, **more: Any) -> ServerSettings:
    base = settings_for(database_url, tmp_path)
    return base.model_copy(update={"mqtt_url": mosquitto.url, "role": role,
                                   "mqtt_client_id": f"{role}-{uuid.uuid4().hex[:6]}", **more})


def _migrated(url: str) -> None:
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()


async def test_each_role_runs_its_own_parts(tmp_path: Path, sqlite_url: str, mosquitto: Mosquitto,
                                            aiohttp_client: MakeClient) -> None:
    _migrated(sqlite_url)
    ingest = await aiohttp_client(make_app(_settings(sqlite_url, tmp_path, mosquitto, "ingest",
                                                     ingest_share_group="g")))
    web_ = await aiohttp_client(make_app(_settings(sqlite_url, tmp_path, mosquitto, "web")))
    reconcile = await aiohttp_client(make_app(_settings(sqlite_url, tmp_path, mosquitto, "reconcile")))

    # An ingest worker: the MQTT ingest, its probes, nothing else.
    assert INGEST in ingest.app and ACCESS not in ingest.app and SERVICE not in ingest.app
    assert (await ingest.get("/api/v1/events")).status == 404
    assert (await ingest.get("/landlord")).status == 404
    await asyncio.to_thread(ingest.app[INGEST].link.wait_subscribed, TIMEOUT)
    assert (await ingest.get("/healthz")).status == 200
    assert "rentgate_events_ingested_total" in await (await ingest.get("/metrics")).text()

    # A web process: pages and APIs; it publishes what its requests change,
    # and answers no gateway's requests (the background process does).
    assert INGEST not in web_.app and SERVICE not in web_.app and PURGE_JOB not in web_.app
    assert (await web_.get("/api/v1/events")).status == 401  # there, for those logged in
    publisher = web_.app[ACCESS].publisher
    assert publisher is not None and not publisher.background

    # The background process: reconciliation, retention, the publishers'
    # catch-ups, woken by commits made elsewhere.
    assert INGEST not in reconcile.app
    assert SERVICE in reconcile.app and PURGE_JOB in reconcile.app and COMMITS in reconcile.app
    publisher = reconcile.app[ACCESS].publisher
    assert publisher is not None and publisher.background


async def test_the_reconcile_process_wakes_on_an_ingest_process_commit(
        tmp_path: Path, postgres_url: str, mosquitto: Mosquitto, aiohttp_client: MakeClient) -> None:
    _migrated(postgres_url)
    ingest = await aiohttp_client(make_app(_settings(postgres_url, tmp_path, mosquitto, "ingest")))
    reconcile = await aiohttp_client(make_app(_settings(postgres_url, tmp_path, mosquitto, "reconcile")))
    feed = reconcile.app[COMMITS]
    service = reconcile.app[SERVICE]
    await asyncio.wait_for(feed.listening.wait(), TIMEOUT)
    notified = asyncio.Event()

    def heard(result: CommitResult) -> None:
        # Only a notification carries the commit's stamp (a poll or the
        # wake-up after connecting does not). Called after the service's own
        # listener has woken it: the catch-up that follows sets caught_up.
        if result.stored_at is not None:
            service.caught_up.clear()
            notified.set()

    feed.add_commit_listener(heard)
    gateway = FakeGateway(mosquitto.url, "gw-roles-1")
    try:
        await asyncio.to_thread(ingest.app[INGEST].link.wait_subscribed, TIMEOUT)
        gateway.publish(batch("gw-roles-1", [card_read("gw-roles-1", 1)]))
        assert (await gateway.next_ack(lambda a: a.committed)).committed == [(1, 1)]
        await asyncio.wait_for(notified.wait(), TIMEOUT)
        await asyncio.wait_for(service.caught_up.wait(), TIMEOUT)
    finally:
        gateway.close()


async def test_the_feed_passes_each_commits_stamp(postgres_url: str) -> None:
    """The police watches find a batch's events by its stored_at stamp."""
    engine = create_engine(postgres_url)
    feed = CommitFeed(engine)
    heard: list[CommitResult] = []
    feed.add_commit_listener(heard.append)
    stopping = asyncio.Event()
    listening = asyncio.create_task(feed.run(stopping))
    notifier = CommitNotifier(engine)
    notifying = asyncio.create_task(notifier.run(stopping))
    try:
        await asyncio.wait_for(feed.listening.wait(), TIMEOUT)
        heard.clear()  # the wake-up every (re)connect makes
        stamps = [datetime(2026, 12, 6, 1, 2, 3, 456789 + i, tzinfo=UTC) for i in range(3)]
        for stamp in stamps:
            notifier.on_commit(CommitResult(inserted=1, stored_at=stamp))
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while sorted(r.stored_at for r in heard if r.stored_at) != stamps:
            assert asyncio.get_running_loop().time() < deadline, heard
            await asyncio.sleep(0.01)
    finally:
        stopping.set()
        listening.cancel()
        await asyncio.gather(listening, notifying, return_exceptions=True)
        engine.dispose()


async def test_without_notifications_the_feed_polls(sqlite_url: str) -> None:
    """SQLite has no LISTEN: a new event id wakes the listeners within a poll."""
    engine = create_engine(sqlite_url)
    migrate.upgrade(engine)
    feed = CommitFeed(engine, poll_s=0.05)
    heard: list[CommitResult] = []
    feed.add_commit_listener(heard.append)
    stopping = asyncio.Event()
    task = asyncio.create_task(feed.run(stopping))
    try:
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while not feed.polls:  # the first poll: it knows the newest id now
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        heard.clear()
        # Stored by "another process": the ingest's store, without its service.
        message = (wire.events_topic("gw-poll"), batch("gw-poll", [card_read("gw-poll", 1)]), datetime.now(UTC))
        await asyncio.to_thread(EventStore(engine).commit, [message])
        while not heard:
            assert asyncio.get_running_loop().time() < deadline, "no wake-up after a new event"
            await asyncio.sleep(0.01)
        assert not feed.listening.is_set()
    finally:
        stopping.set()
        await asyncio.wait_for(task, TIMEOUT)
        engine.dispose()


def test_check_config_warns_of_roles_that_would_not_share(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("RENTGATE_") and name not in OTHER_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    postgres = "postgresql://rentgate@db.example/rentgate"

    def warnings(*argv: str) -> list[str]:
        code = main(["server", *argv, "check-config", "--json"])
        out, _ = capsys.readouterr()
        doc = json.loads(out.strip().splitlines()[-1])
        assert code == 0 and doc["ok"], doc
        return [w["code"] for w in doc["warnings"] if w["code"] not in ("not_public", "not_set")]

    # Every worker would get every message.
    assert warnings("--role", "ingest", "--database-url", postgres) == ["no_share_group"]
    monkeypatch.setenv("RENTGATE_INGEST_SHARE_GROUP", "ingest")
    assert warnings("--role", "ingest", "--database-url", postgres) == []
    assert warnings("--role", "web", "--database-url", postgres) == ["share_group_unused"]
    monkeypatch.delenv("RENTGATE_INGEST_SHARE_GROUP")
    assert warnings("--role", "reconcile") == ["role_on_sqlite"]
    assert warnings() == []


def test_processes_that_run_several_to_a_machine_get_client_ids_of_their_own() -> None:
    """Two processes with one MQTT client id would throw each other off the
    broker for ever: without RENTGATE_MQTT_CLIENT_ID, workers of a share group
    and web processes add their process id."""
    def client_id(**environ: str) -> str:
        env = {"RENTGATE_DATABASE_URL": "postgresql://rentgate@db.example/rentgate", **environ}
        return _worker_client_id(read_settings(env)).mqtt_client_id

    default = read_settings({}).settings.mqtt_client_id
    assert client_id(RENTGATE_ROLE="ingest", RENTGATE_INGEST_SHARE_GROUP="g") == f"{default}-{os.getpid()}"
    assert client_id(RENTGATE_ROLE="web") == f"{default}-{os.getpid()}"
    assert client_id(RENTGATE_ROLE="reconcile") == default  # exactly one: its id stays put
    assert client_id(RENTGATE_ROLE="web", RENTGATE_MQTT_CLIENT_ID="web-2") == "web-2"


async def test_a_second_reconcile_process_on_one_database_refuses_to_start(
        tmp_path: Path, postgres_url: str, mosquitto: Mosquitto, aiohttp_client: MakeClient) -> None:
    from server.db.singleton import AlreadyRunning

    _migrated(postgres_url)
    first = await aiohttp_client(make_app(_settings(postgres_url, tmp_path, mosquitto, "reconcile")))
    with pytest.raises(AlreadyRunning):
        await aiohttp_client(make_app(_settings(postgres_url, tmp_path, mosquitto, "reconcile")))
    # Web and ingest processes are many by design: the lock is not theirs.
    await aiohttp_client(make_app(_settings(postgres_url, tmp_path, mosquitto, "web")))
    await first.close()
    # The first one gone, a reconcile process starts at once (a restart, a failover).
    again = await aiohttp_client(make_app(_settings(postgres_url, tmp_path, mosquitto, "reconcile")))
    assert again.app[SERVICE] is not None


def _lock_holders(url: str) -> list[int]:
    """Backend pids holding the reconcile advisory lock."""
    import sqlalchemy as sa


    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [int(pid) for pid in conn.execute(sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = :k"), {"k": singleton_key()}).scalars()]
    finally:
        engine.dispose()


def singleton_key() -> int:
    from server.db.singleton import lock_key

    return lock_key("reconcile")


async def _until(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await asyncio.to_thread(predicate)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return result


async def test_the_reconcile_process_takes_its_lock_again_when_its_session_is_cut(
        tmp_path: Path, postgres_url: str, mosquitto: Mosquitto, aiohttp_client: MakeClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A database restart (here: the lock's session cut by the server) takes
    the lock with it while the process lives on: the process must take it
    again, or a second reconcile process could start beside it."""
    import sqlalchemy as sa

    from server import app as app_module
    from server.db.singleton import AlreadyRunning

    monkeypatch.setattr(app_module, "LOCK_CHECK_S", 0.05)
    _migrated(postgres_url)
    await aiohttp_client(make_app(_settings(postgres_url, tmp_path, mosquitto, "reconcile")))
    [first] = await _until(lambda: _lock_holders(postgres_url), "the lock to be held")
    admin = create_engine(postgres_url)
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": first})
    admin.dispose()
    [again] = await _until(lambda: [p for p in _lock_holders(postgres_url) if p != first], "the lock taken again")
    assert again != first
    with pytest.raises(AlreadyRunning):
        await aiohttp_client(make_app(_settings(postgres_url, tmp_path, mosquitto, "reconcile")))


async def test_a_reconcile_process_that_lost_its_lock_to_another_stops(
        tmp_path: Path, postgres_url: str, mosquitto: Mosquitto, aiohttp_client: MakeClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process took the lock while this one's session was gone (a
    standby started during a database restart): this one stops its
    background work instead of running beside it."""
    import sqlalchemy as sa

    from server import app as app_module

    monkeypatch.setattr(app_module, "LOCK_CHECK_S", 0.05)
    _migrated(postgres_url)
    app = make_app(_settings(postgres_url, tmp_path, mosquitto, "reconcile"))
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_lost() -> None:
        loop.call_soon_threadsafe(stopped.set)

    app[app_module.ON_RECONCILE_LOCK_LOST] = on_lost
    await aiohttp_client(app)
    [first] = await _until(lambda: _lock_holders(postgres_url), "the lock to be held")
    other = create_engine(postgres_url)
    try:
        with other.connect() as conn:
            # Cut the holder's session and take the lock in its place (the
            # blocking form waits for the dying backend to let go).
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": first})
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": singleton_key()})
            await asyncio.wait_for(stopped.wait(), 20)
            assert app_module.reconcile_lock_lost.is_set()
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": singleton_key()})
    finally:
        other.dispose()
        app_module.reconcile_lock_lost.clear()
