"""Recovery that is quick and quiet: PostgreSQL is stopped for a few
seconds while events flow into a running ingest. Ingest commits again
within about a second of the database accepting connections (not at the end
of a backoff grown while it was away), the outage is logged twice, once when
it starts and once when it ends with its length, never with a traceback,
and every event is stored exactly once."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from server.db import migrate
from server.db.engine import create_engine
from server.ingest.consumer import IngestService
from server.ingest.store import CommitResult, EventStore
from server.settings import ServerSettings
from tests.server.helpers import batch, card_read
from tests.server.mqtt_gateway import TIMEOUT, FakeGateway
from tests.services import PostgresCluster, wait_for

GW = "gw-outage-1"
OUTAGE_S = 3.0
# Ingest probes every 0.25 s; a commit takes a few milliseconds more. 1 s
# leaves room for a loaded machine.
RESUME_WITHIN_S = 1.0


@pytest.fixture
def cluster(own_pg_cluster: PostgresCluster) -> PostgresCluster:
    """A PostgreSQL of this test's own: it is stopped and started again."""
    return own_pg_cluster


@pytest.fixture
def engine(cluster: PostgresCluster) -> Iterator[sa.Engine]:
    engine = create_engine(cluster.url(cluster.create_database()))
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


class Publisher:
    """A gateway that sends one event every ``interval_s`` from a thread of
    its own, through the outage and after it."""

    def __init__(self, gateway: FakeGateway, interval_s: float = 0.02) -> None:
        self.gateway = gateway
        self.interval_s = interval_s
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sent += 1
            self.gateway.publish(batch(GW, [card_read(GW, self.sent)]))
            self._stop.wait(self.interval_s)


def stored(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        total, distinct = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT seq) FROM events WHERE gateway_id = :gw"), {"gw": GW}).one()
    return int(total), int(distinct)


async def test_ingest_resumes_within_a_second_of_the_database_and_says_so_twice(
        cluster: PostgresCluster, engine: sa.Engine, mosquitto: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="server")
    settings = ServerSettings(database_url=str(engine.url), mqtt_url=mosquitto.url,
                              mqtt_client_id=f"server-{uuid.uuid4().hex[:8]}")
    service = IngestService(settings, EventStore(engine))
    commits: list[float] = []

    def committed(result: CommitResult) -> None:
        commits.append(time.monotonic())

    service.add_commit_listener(committed)
    task = asyncio.create_task(service.run(), name="ingest-under-test")
    gateway = FakeGateway(mosquitto.url, GW)
    publisher = Publisher(gateway)
    try:
        assert (await gateway.server_status()).state == "online"
        publisher.start()
        await asyncio.to_thread(wait_for, lambda: len(commits) >= 5, TIMEOUT, what="commits before the outage")

        await asyncio.to_thread(cluster.stop)
        await asyncio.to_thread(wait_for, lambda: service.outage.down, TIMEOUT, what="ingest to notice")
        before = len(commits)
        await asyncio.sleep(OUTAGE_S)  # the outage's length: events keep coming meanwhile
        assert len(commits) == before
        await asyncio.to_thread(cluster.start)  # returns once it answers queries
        accepting = time.monotonic()
        await asyncio.to_thread(wait_for, lambda: len(commits) > before, TIMEOUT, what="a commit after the outage")
        resumed_after = commits[before] - accepting
        assert resumed_after < RESUME_WITHIN_S, f"first commit {resumed_after:.2f} s after the database was back"

        publisher.stop()
        await asyncio.to_thread(wait_for, lambda: stored(engine)[0] == publisher.sent, TIMEOUT,
                                what="every event stored")
    finally:
        publisher.stop()
        service.stop()
        await asyncio.wait_for(task, TIMEOUT)
        gateway.close()
    assert stored(engine) == (publisher.sent, publisher.sent)  # none lost, none twice

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("server")]
    said = [r.getMessage() for r in warnings]
    assert len(said) == 2, said
    assert said[0].startswith("the database, for storing events unavailable"), said
    assert said[1].startswith("the database, for storing events back after"), said
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert service.outage.count == 1 and service.outage.last_duration_s is not None
    assert service.outage.last_duration_s >= OUTAGE_S
