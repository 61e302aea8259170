"""Three `rentgate server --role ingest` processes on one MQTT shared
subscription, a real Mosquitto and a real PostgreSQL, and real gateways (the
gateway application with its outbox, in this process): one worker is
SIGKILLed while events flow, and every event ends stored exactly once.

Mosquitto does not hand a killed shared subscriber's in-flight messages to
its siblings (its issue 2662); what covers them is the gateway's outbox: the
dead worker's last will on its own status topic makes each gateway send again
what is unacknowledged, and the server acknowledges only after commit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from rentgate import wire
from server.db import migrate
from server.db.engine import create_engine
from tests.gateway.helpers import card, wait_until
from tests.server.server_procs import ServerProc
from tests.services import Mosquitto, MqttProbe, wait_for

GROUP = "ingest"
GATEWAYS = ("gw-share-1", "gw-share-2", "gw-share-3")
ROUNDS = 60          # rounds of events, ROUND_S apart
ROUND_S = 0.05
PER_ROUND = 2        # events per gateway per round: 3 x 2 x 60 = 360 events in about 3 s
FREEZE_AT_ROUND = 10   # SIGSTOP: the broker goes on handing the victim its share, which piles up in flight
KILL_AT_ROUND = 25     # SIGKILL: what it was handed is gone from the broker


@pytest.fixture
def database(postgres_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(postgres_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def workers(tmp_path: Path, mosquitto: Mosquitto, postgres_url: str,
            database: sa.Engine) -> Iterator[list[ServerProc]]:
    procs = [ServerProc(tmp_path, f"ingest-{i}", role="ingest", database_url=postgres_url, mqtt_url=mosquitto.url,
                        env={"RENTGATE_INGEST_SHARE_GROUP": GROUP})
             for i in (1, 2, 3)]
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.wait_healthy()
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.stop()


def _config(tmp_path: Path, url: str, gw: str) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "gateway_id": gw, "mqtt_url": url, "data_dir": str(tmp_path / gw), "heartbeat_s": 5,
        # Long: the replay on the worker's last will must cover the loss, not this.
        "outbox": {"ack_timeout_s": 60}, "devices": [],
    })


@asynccontextmanager
async def gateway(config: GatewayConfig) -> AsyncIterator[GatewayApp]:
    app = GatewayApp(config)
    task = asyncio.create_task(app.run(), name=f"gateway-{config.gateway_id}")
    try:
        await asyncio.wait_for(app.ready.wait(), 10)
        assert app.link is not None
        await asyncio.to_thread(app.link.wait_subscribed, 10)
        yield app
    finally:
        app.stop()
        await asyncio.wait_for(task, 15)


def _stored(engine: sa.Engine) -> dict[str, list[int]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT gateway_id, seq FROM events WHERE kind = 'card_read' ORDER BY seq"))
        found: dict[str, list[int]] = {}
        for gw, seq in rows:
            found.setdefault(gw, []).append(int(seq))
    return found


def _retained_statuses(url: str, topics: set[str], timeout: float = 10.0) -> dict[str, str]:
    """The retained state of the server status topics, as a gateway connecting
    now reads them: once every one of ``topics`` has been heard (nothing marks
    the end of the retained messages, so the test names what it expects),
    plus anything else retained that arrived with them."""
    probe = MqttProbe("127.0.0.1", int(url.rsplit(":", 1)[1])).connect()
    found: dict[str, str] = {}

    def heard_all() -> bool:
        while not probe.messages.empty():
            message = probe.messages.get_nowait()
            found[message.topic] = json.loads(message.payload)["state"]
        return topics <= found.keys()

    try:
        probe.subscribe(wire.SERVER_STATUS_TOPIC)
        probe.subscribe(wire.SERVER_WORKER_STATUS_SUBSCRIPTION)
        wait_for(heard_all, timeout, what=f"the retained statuses of {sorted(topics)}")
    finally:
        probe.close()
    return found


async def test_a_killed_ingest_worker_loses_and_doubles_nothing(
        tmp_path: Path, mosquitto: Mosquitto, workers: list[ServerProc], database: sa.Engine) -> None:
    expected: dict[str, int] = dict.fromkeys(GATEWAYS, 0)
    async with AsyncExitStack() as stack:
        apps = [await stack.enter_async_context(gateway(_config(tmp_path, mosquitto.url, gw))) for gw in GATEWAYS]
        for app in apps:
            await wait_until(lambda app=app: app.server_online, timeout=5,  # type: ignore[misc]
                             what="the gateway to see the workers online")
        victim = workers[1]
        held = 0
        for round_no in range(ROUNDS):
            if round_no == FREEZE_AT_ROUND:
                victim.pause()
            if round_no == KILL_AT_ROUND:
                # The living workers acknowledge within milliseconds; what is
                # still unacknowledged after a pause is what the broker handed
                # to the frozen one (an absence cannot be awaited: a pause).
                await asyncio.sleep(0.5)
                held = sum(app.outbox.depth() for app in apps if app.outbox is not None)
                victim.kill()
            for app in apps:
                app.record([card(f"{round_no:05d}{i:05d}", gw=app.gateway_id) for i in range(PER_ROUND)])
                expected[app.gateway_id] += PER_ROUND
            await asyncio.sleep(ROUND_S)  # a steady stream, not one burst
        for app in apps:
            assert app.outbox is not None
            outbox = app.outbox
            await wait_until(lambda outbox=outbox: outbox.depth() == 0, timeout=15,  # type: ignore[misc]
                             what=f"{app.gateway_id}'s outbox to be acknowledged in full")
        # The others kept the gateways sending: one worker's last will is no server's.
        assert all(app.server_online for app in apps)
        replays = [app.sender.stats.last_replay_reason for app in apps if app.sender is not None]

    stored = _stored(database)
    for gw in GATEWAYS:
        seqs = stored.get(gw, [])
        assert len(seqs) == expected[gw], f"{gw}: {len(seqs)} stored of {expected[gw]} sent"
        assert len(set(seqs)) == len(seqs), f"{gw}: a seq stored twice"
    with database.connect() as conn:
        # Holes the loss opened were asked for and filled; none is left open.
        assert conn.execute(sa.text("SELECT count(*) FROM seq_gaps WHERE state = 'open'")).scalar_one() == 0
    living = [w for w in workers if w is not victim]
    # The events were shared out, not each one taken by every worker: each
    # living worker stored some, and together they received far fewer
    # messages than three subscribers without a group would.
    ingested = [w.metric("rentgate_events_ingested_total") for w in living]
    assert all(n > 0 for n in ingested), ingested
    received = sum(w.metric("rentgate_messages_received_total") for w in living)
    assert received < 2 * sum(expected.values()), received
    # The victim died holding its share of 15 rounds; the outboxes sent it
    # again when its last will said it was gone, and all of it is stored.
    assert held >= 10, held
    assert all(r is not None and r.startswith("server worker ingest-2/") for r in replays), replays
    want = {wire.server_worker_status_topic("ingest-1"): "online",
            wire.server_worker_status_topic("ingest-2"): "offline",
            wire.server_worker_status_topic("ingest-3"): "online"}
    statuses = await asyncio.to_thread(_retained_statuses, mosquitto.url, set(want))
    assert statuses == want, statuses
