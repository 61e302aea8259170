"""Two engines pass the ingest tests: Mosquitto with ingest on an MQTT
subscription, and a three-node NATS cluster with ingest pulling from a
JetStream work queue (docs/clustering.md). Real gateways (their outboxes,
senders and MQTT links) send card reads through the engine into PostgreSQL;
each must be stored exactly once and acknowledged (gone from the gateway's
outbox). On NATS also: an ingest worker SIGKILLed mid-flow loses and doubles
nothing, and a node killed leaves the gateways on the other nodes working."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from rentgate import wire
from server.db import migrate
from server.db.engine import create_engine
from server.ingest.consumer import IngestService
from server.ingest.store import EventStore
from tests.server.helpers import card_read
from tests.server.ingest_engines.engines import (
    Engine,
    LiveGateway,
    consumer_waiting,
    outbox_cards,
    stored_cards,
    stream_messages,
    until,
)
from tests.server.server_procs import ServerProc
from tests.services import Mosquitto, MqttProbe, NatsCluster, PostgresCluster

pytestmark = pytest.mark.services

TIMEOUT = 30.0


@pytest.fixture(params=["mosquitto", "nats"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    if request.param == "mosquitto":
        broker: Mosquitto = request.getfixturevalue("mosquitto")
        yield Engine("mosquitto", [broker.url], mosquitto=broker)
        return
    cluster: NatsCluster = request.getfixturevalue("nats_cluster")
    engine = Engine("nats", [node.mqtt_url for node in cluster.nodes], cluster=cluster)
    engine.reset()
    yield engine
    engine.reset()


@pytest.fixture
def nats_engine(nats_cluster: NatsCluster) -> Iterator[Engine]:
    engine = Engine("nats", [node.mqtt_url for node in nats_cluster.nodes], cluster=nats_cluster)
    engine.reset()
    yield engine
    engine.reset()


@pytest.fixture(scope="module")
def events_db_url(pg_cluster: PostgresCluster) -> Iterator[str]:
    """One migrated database for the module (a migration costs seconds): each
    test's gateways have ids of their own, and every check names them."""
    name = pg_cluster.create_database()
    engine = create_engine(pg_cluster.url(name))
    migrate.upgrade(engine)
    engine.dispose()
    yield pg_cluster.url(name)
    pg_cluster.drop_database(name)


@pytest.fixture
def db(events_db_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(events_db_url)
    yield engine
    engine.dispose()


async def start_ingest(engine: Engine, db: sa.Engine, events_db_url: str) -> tuple[IngestService, asyncio.Task[None]]:
    service = IngestService(engine.settings(events_db_url), EventStore(db))
    task = asyncio.create_task(service.run(), name="ingest-under-test")
    assert await asyncio.to_thread(service.link.wait_subscribed, TIMEOUT)
    if engine.cluster is not None:
        urls = engine.cluster.urls
        await until(lambda: asyncio.run(consumer_waiting(urls))[0] >= 1, TIMEOUT, "the worker to pull", watch=task)
    return service, task


@pytest.fixture
async def ingest(engine: Engine, db: sa.Engine, events_db_url: str) -> AsyncIterator[IngestService]:
    service, task = await start_ingest(engine, db, events_db_url)
    yield service
    service.stop()
    await asyncio.wait_for(task, TIMEOUT)


@pytest.fixture
async def nats_ingest(nats_engine: Engine, db: sa.Engine, events_db_url: str) -> AsyncIterator[IngestService]:
    service, task = await start_ingest(nats_engine, db, events_db_url)
    yield service
    service.stop()
    await asyncio.wait_for(task, TIMEOUT)


def gateway_id() -> str:
    return f"gw-{uuid.uuid4().hex[:8]}"


async def start_gateways(engine: Engine, tmp_path: Path, count: int, *, ack_timeout_s: float = 15.0,
                         fallbacks: bool = False) -> list[LiveGateway]:
    """``count`` gateways spread over the engine's nodes; with ``fallbacks``
    each knows the other nodes too (mqtt_fallback_urls)."""
    urls = engine.gateway_urls
    gateways = [LiveGateway(gateway_id(), urls[i % len(urls)], tmp_path / f"gw{i}", ack_timeout_s=ack_timeout_s,
                            fallback_urls=[u for u in urls if u != urls[i % len(urls)]] if fallbacks else None)
                for i in range(count)]
    await asyncio.gather(*(g.start() for g in gateways))
    return gateways


async def delivered(db: sa.Engine, gateways: list[LiveGateway], timeout: float = TIMEOUT) -> None:
    """Every card read of every gateway stored exactly once, and acknowledged:
    none is left in any outbox."""
    def done() -> bool:
        return all(outbox_cards(g) == 0 and sum(stored_cards(db, g.gateway_id).values()) >= len(g.cards)
                   for g in gateways)

    await until(done, timeout, "every card read stored and acknowledged")
    for g in gateways:
        stored = stored_cards(db, g.gateway_id)
        assert stored == Counter(g.cards), f"{g.gateway_id}: stored {sum(stored.values())} rows for " \
                                           f"{len(g.cards)} card reads"


# --------------------------------------------------------------------------- both engines


async def test_every_event_is_stored_once_and_acknowledged(engine: Engine, ingest: IngestService, db: sa.Engine,
                                                           tmp_path: Path) -> None:
    gateways = await start_gateways(engine, tmp_path, 3)
    try:
        for _ in range(3):
            await asyncio.gather(*(g.add(100) for g in gateways))
        await delivered(db, gateways)
        assert ingest.metrics.events_ingested >= 900
    finally:
        await asyncio.gather(*(g.stop() for g in gateways))


async def test_an_event_sent_twice_is_stored_once_and_acknowledged_twice(engine: Engine, ingest: IngestService,
                                                                          db: sa.Engine) -> None:
    gw = gateway_id()
    host, port = engine.gateway_urls[-1].removeprefix("mqtt://").split(":")
    probe = MqttProbe(host, int(port)).connect(TIMEOUT)
    try:
        probe.subscribe(wire.ack_topic(gw), timeout=TIMEOUT)
        payload = wire.encode_event(card_read(gw, 1, card="00000000AA")).encode()
        for _ in range(2):
            probe.publish(wire.events_topic(gw), payload, timeout=TIMEOUT)
            _topic, body, _retained = await asyncio.to_thread(probe.expect, TIMEOUT)
            assert wire.decode_ack(body).committed == [(1, 1)]
    finally:
        probe.close()
    assert stored_cards(db, gw) == Counter({"00000000AA": 1})
    assert ingest.metrics.outcomes["duplicate"] == 1


async def test_garbage_is_dead_lettered_and_the_events_after_it_stored(engine: Engine, ingest: IngestService,
                                                                       db: sa.Engine) -> None:
    gw = gateway_id()
    host, port = engine.gateway_urls[0].removeprefix("mqtt://").split(":")
    probe = MqttProbe(host, int(port)).connect(TIMEOUT)
    try:
        probe.subscribe(wire.ack_topic(gw), timeout=TIMEOUT)
        probe.publish(wire.events_topic(gw), b"\x00\x01 not json at all", timeout=TIMEOUT)
        probe.publish(wire.events_topic(gw), json.dumps({"v": 1, "events": "none"}).encode(), timeout=TIMEOUT)
        probe.publish(wire.events_topic(gw), wire.encode_event(card_read(gw, 1, card="00000000BB")).encode(), timeout=TIMEOUT)
        # An ack for the good event; the garbage names no seq and gets none.
        while not (ack := wire.decode_ack((await asyncio.to_thread(probe.expect, TIMEOUT))[1])).committed:
            pass
    finally:
        probe.close()
    assert ack.committed == [(1, 1)]
    with db.connect() as conn:
        reasons = conn.execute(sa.text("SELECT topic, reason FROM dead_letters WHERE topic = :t ORDER BY id"),
                               {"t": wire.events_topic(gw)}).all()
    assert [topic for topic, _ in reasons] == [wire.events_topic(gw)] * 2
    assert "JSON" in reasons[0][1]
    assert stored_cards(db, gw) == Counter({"00000000BB": 1})


# --------------------------------------------------------------------------- NATS: workers and nodes die


async def test_an_ingest_worker_killed_mid_flow_loses_and_doubles_nothing(nats_engine: Engine, db: sa.Engine,
                                                                          events_db_url: str,
                                                                          tmp_path: Path) -> None:
    """Two workers share the consumer while card reads flow; one is frozen
    with events it fetched and not acknowledged, then SIGKILLed. JetStream
    gives those to the other worker after ack_wait (2 s here), which stores
    or finds them stored (the gateways also send again what is unacknowledged
    when a worker's last will says it died) and acknowledges them: the work
    queue ends empty, which it could not while the dead worker's messages
    were still waiting for an acknowledgement."""
    assert nats_engine.cluster is not None
    urls = nats_engine.cluster.urls
    env = nats_engine.environment(events_db_url) | {"RENTGATE_INGEST_BATCH_MESSAGES": "20"}
    victim, survivor = (ServerProc(tmp_path, f"ingest-{i}-{uuid.uuid4().hex[:6]}", env=env).start()
                        for i in range(2))
    gateways: list[LiveGateway] = []
    try:
        def pulling() -> bool:
            victim.check()
            survivor.check()
            return asyncio.run(consumer_waiting(urls))[0] >= 2

        def victim_holds_events() -> bool:
            # The survivor acknowledges within milliseconds; what stays
            # unacknowledged across half a second is the frozen worker's.
            if asyncio.run(consumer_waiting(urls))[1] == 0:
                return False
            time.sleep(0.5)
            return asyncio.run(consumer_waiting(urls))[1] > 0

        await until(pulling, 60, "both workers to pull")
        gateways = await start_gateways(nats_engine, tmp_path, 3, ack_timeout_s=120)

        async def flow(steps: int) -> None:
            for _ in range(steps):
                await asyncio.gather(*(g.add(4) for g in gateways))
                await asyncio.sleep(0.02)

        await flow(10)
        # A frozen worker holds events only if JetStream handed some to its
        # pull request in the second before that request expired; on a busy
        # machine the survivor can take them all. Thaw and try again then.
        for _attempt in range(6):
            victim.pause()
            await flow(15)
            if await asyncio.to_thread(victim_holds_events):
                break
            victim.resume()
            await until(pulling, TIMEOUT, "the thawed worker to pull again")
        else:
            raise AssertionError("the frozen worker never held events in six tries")
        victim.kill()
        await flow(25)
        await delivered(db, gateways)
        await until(lambda: asyncio.run(stream_messages(urls)) == 0, TIMEOUT, "an empty work queue")
        survivor.check()
    finally:
        await asyncio.gather(*(g.stop() for g in gateways))
        victim.kill()
        survivor.stop()


async def test_a_nats_node_killed_the_gateways_and_the_server_go_on_through_the_others(
        nats_engine: Engine, nats_ingest: IngestService, db: sa.Engine, tmp_path: Path) -> None:
    """Three gateways, one per node, each knowing the other nodes
    (mqtt_fallback_urls); the server's MQTT link on the first node, knowing
    the others too (RENTGATE_MQTT_FALLBACK_URLS). The first node is
    SIGKILLed: the gateways on the other two go on while the stream and its
    consumer elect new leaders, and the first gateway and the server's link
    move to another node; every card read is stored once and acknowledged.
    Last in the module: the node stays down (a restarted 2.9 node takes
    several seconds before it accepts MQTT again, docs/clustering.md)."""
    assert nats_engine.cluster is not None
    lost = nats_engine.cluster.nodes[0]
    gateways = await start_gateways(nats_engine, tmp_path, 3, fallbacks=True)
    try:
        for g in gateways:
            await g.add(50)
        await delivered(db, gateways)
        moved = gateways[0]
        assert moved.app.link is not None and moved.app.link.address.port == lost.mqtt_port
        assert nats_ingest.link.address.port == lost.mqtt_port
        lost.kill()
        for g in gateways:
            await g.add(50)
        # Generous: on a loaded machine the survivors take a while to elect
        # new leaders, and NATS drops MQTT clients whose requests to
        # JetStream time out meanwhile (they reconnect and replay).
        await delivered(db, gateways, timeout=60)
        assert moved.app.link.address.port != lost.mqtt_port
        assert nats_ingest.link.address.port != lost.mqtt_port
    finally:
        await asyncio.gather(*(g.stop() for g in gateways))
