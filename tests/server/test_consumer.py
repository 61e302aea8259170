"""IngestService against a real Mosquitto, with paho playing the gateway."""

from __future__ import annotations

import asyncio
import queue
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from rentgate import wire
from server.db.models import dead_letters, events
from server.ingest.consumer import IngestService
from server.ingest.store import EventStore
from server.settings import ServerSettings
from tests.server.helpers import batch, card_read
from tests.services import wait_for

GW = "gw-consumer-1"
TIMEOUT = 10.0


class FakeGateway:
    """Publishes like a gateway and collects what the server sends back."""

    def __init__(self, url: str, gw: str) -> None:
        self.gw = gw
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        port = int(url.rsplit(":", 1)[1])
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda c, u, m: self.received.put((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(wire.ack_topic(gw), 1), (wire.SERVER_STATUS_TOPIC, 1)])
        self.client.loop_start()

    def publish(self, payload: bytes, leaf: str = "events") -> None:
        self.client.publish(f"{wire.TOPIC_ROOT}/gw/{self.gw}/{leaf}", payload, qos=1).wait_for_publish(TIMEOUT)

    async def next_ack(self, predicate: Any = lambda ack: True) -> wire.Ack:
        while True:
            topic, payload = await asyncio.to_thread(self.received.get, True, TIMEOUT)
            if topic == wire.ack_topic(self.gw) and predicate(ack := wire.decode_ack(payload)):
                return ack

    async def server_status(self) -> wire.ServerStatus:
        while True:
            topic, payload = await asyncio.to_thread(self.received.get, True, TIMEOUT)
            if topic == wire.SERVER_STATUS_TOPIC:
                return wire.decode_server_status(payload)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def settings(mosquitto: Any, sqlite_url: str) -> ServerSettings:
    return ServerSettings(database_url=sqlite_url, mqtt_url=mosquitto.url,
                          mqtt_client_id=f"server-{uuid.uuid4().hex[:8]}", gap_resend_delay_s=0.3)


@pytest.fixture
async def service(settings: ServerSettings, sqlite_engine: sa.Engine) -> AsyncIterator[IngestService]:
    service = IngestService(settings, EventStore(sqlite_engine))
    task = asyncio.create_task(service.run(), name="test-ingest")
    await asyncio.to_thread(service.link.wait_connected, TIMEOUT)
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
    await asyncio.to_thread(first.link.wait_connected, TIMEOUT)
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
