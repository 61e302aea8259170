"""IngestService against a real Mosquitto, with paho playing the gateway."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from rentgate import wire
from server.db.models import dead_letters, events
from server.ingest.consumer import IngestService
from server.ingest.store import EventStore
from server.settings import ServerSettings
from tests.server.helpers import batch, card_read
from tests.server.mqtt_gateway import TIMEOUT, FakeGateway
from tests.services import wait_for

GW = "gw-consumer-1"


@pytest.fixture
def settings(mosquitto: Any, sqlite_url: str) -> ServerSettings:
    return ServerSettings(database_url=sqlite_url, mqtt_url=mosquitto.url,
                          mqtt_client_id=f"server-{uuid.uuid4().hex[:8]}", gap_resend_delay_s=0.3)


@pytest.fixture
async def service(settings: ServerSettings, sqlite_engine: sa.Engine) -> AsyncIterator[IngestService]:
    service = IngestService(settings, EventStore(sqlite_engine))
    task = asyncio.create_task(service.run(), name="test-ingest")
    await asyncio.to_thread(service.link.wait_subscribed, TIMEOUT)
    yield service
    service.stop()
    await asyncio.wait_for(task, TIMEOUT)


@pytest.fixture
def gateway(mosquitto: Any) -> Iterator[FakeGateway]:
    fake = FakeGateway(mosquitto.url, GW)
    yield fake
    fake.close()


def stored(engine: sa.Engine, table: sa.Table = events) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


async def test_events_are_acknowledged_after_commit(service: IngestService, gateway: FakeGateway,
                                                    sqlite_engine: sa.Engine) -> None:
    assert (await gateway.server_status()).state == "online"
    gateway.publish(batch(GW, [card_read(GW, s) for s in range(1, 101)]))
    ack = await gateway.next_ack()
    assert ack.committed == [(1, 100)]
    # The ack is only sent after the commit, so the rows are there now.
    assert stored(sqlite_engine) == 100
    assert service.metrics.events_ingested == 100


async def test_garbage_is_dead_lettered_and_ingest_goes_on(service: IngestService, gateway: FakeGateway,
                                                           sqlite_engine: sa.Engine) -> None:
    gateway.publish(b"\x00\x01 definitely not json")
    gateway.publish(b"{}", leaf="status")
    gateway.publish(wire.encode_event(card_read(GW, 1)).encode())
    ack = await gateway.next_ack()
    assert ack.committed == [(1, 1)]
    await asyncio.to_thread(wait_for, lambda: stored(sqlite_engine, dead_letters) == 2, TIMEOUT,
                            what="two dead letters")


async def test_a_gap_is_asked_for_again(service: IngestService, gateway: FakeGateway) -> None:
    gateway.publish(batch(GW, [card_read(GW, 1), card_read(GW, 4)]))
    ack = await gateway.next_ack(lambda a: a.resend)
    assert ack.resend == [(2, 3)]
    gateway.publish(batch(GW, [card_read(GW, 2), card_read(GW, 3)]))
    assert (await gateway.next_ack(lambda a: a.committed)).committed == [(2, 3)]
    await asyncio.to_thread(wait_for, lambda: service.gaps.count_open() == 0, TIMEOUT, what="gap filled")


async def test_events_sent_while_the_server_is_down_arrive_after_restart(
        settings: ServerSettings, sqlite_engine: sa.Engine, gateway: FakeGateway) -> None:
    first = IngestService(settings, EventStore(sqlite_engine))
    task = asyncio.create_task(first.run(), name="test-ingest-1")
    await asyncio.to_thread(first.link.wait_subscribed, TIMEOUT)
    first.stop()
    await asyncio.wait_for(task, TIMEOUT)

    # The broker queues these for the server's persistent session.
    gateway.publish(batch(GW, [card_read(GW, s) for s in range(1, 6)]))
    second = IngestService(settings, EventStore(sqlite_engine))
    task = asyncio.create_task(second.run(), name="test-ingest-2")
    try:
        assert (await gateway.next_ack(lambda a: a.committed)).committed == [(1, 5)]
    finally:
        second.stop()
        await asyncio.wait_for(task, TIMEOUT)
    assert stored(sqlite_engine) == 5
