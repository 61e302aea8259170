"""The gateway and the server's retained status, against a real Mosquitto:
it holds its replay while the server is known to be offline (also when the
gateway itself has just restarted), and with several ingest workers, each
with a status topic of its own, it counts the server online while any of
them says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import GatewayConfig
from gateway.writer import AsyncOutbox
from rentgate import wire
from rentgate.mqtt import BrokerAddress
from tests.gateway.fake_server import FakeServer
from tests.gateway.helpers import GW, cards, wait_until
from tests.gateway.test_app import running
from tests.gateway.test_sender import Clock, FakeLink, _sender
from tests.services import Mosquitto


def _config(tmp_path: Path, url: str) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "gateway_id": GW, "mqtt_url": url, "data_dir": str(tmp_path / "data"), "heartbeat_s": 5,
        "outbox": {"ack_timeout_s": 30}, "devices": [],
    })


@pytest.fixture
def server(mosquitto: Mosquitto) -> Iterator[FakeServer]:
    fake = FakeServer(mosquitto.url, GW, acking=False)
    yield fake
    fake.close()


class Workers:
    """Ingest workers' retained statuses, each on its own topic, as
    `rentgate server --role ingest` with a share group publishes them."""

    def __init__(self, url: str) -> None:
        address = BrokerAddress.parse(url)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="fake-workers")
        self.client.connect(address.host, address.port)
        self.client.loop_start()

    def say(self, worker: str, state: str, instance: str | None = None) -> None:
        status = wire.ServerStatus(state=state, instance=instance or f"{worker}/1", ts=wire.utcnow())  # type: ignore[arg-type]
        self.client.publish(wire.server_worker_status_topic(worker), status.model_dump_json(), qos=1,
                            retain=True).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def workers(mosquitto: Mosquitto) -> Iterator[Workers]:
    fake = Workers(mosquitto.url)
    yield fake
    fake.close()


async def test_a_gateway_restarted_while_the_server_is_down_holds_its_backlog(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer) -> None:
    config = _config(tmp_path, mosquitto.url)
    server.set_status("online", "server-a")
    async with running(config) as app:
        app.record(cards(5))  # sent, never acknowledged: the outbox keeps them
        await wait_until(lambda: len(set(server.seqs("card_read"))) == 5, what="the reads at the server")
    server.set_status("offline", "server-a")

    async with running(config) as app:
        # The retained "offline" arrives after the connect that would replay.
        await wait_until(lambda: app.server_seen, what="the retained server status")
        assert app.sender is not None and app.sender.holding
        await asyncio.sleep(0.5)  # a wrong replay would be at the broker by now
        # A replay would carry this run's gateway_started, the outbox's 7th
        # event (late copies of the first run's events may still trickle in).
        assert 7 not in server.seqs(), "replayed into a broker nobody reads"
        server.acking = True
        server.set_status("online", "server-b")
        assert app.outbox is not None
        outbox = app.outbox
        await wait_until(lambda: outbox.depth() == 0, what="the backlog delivered once the server is back")
        assert set(server.seqs("card_read")) == {2, 3, 4, 5, 6} and 7 in server.seqs()


async def test_one_workers_last_will_is_not_the_servers(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer, workers: Workers) -> None:
    workers.say("ingest-1", "online")
    workers.say("ingest-2", "online")
    async with running(_config(tmp_path, mosquitto.url)) as app:
        await wait_until(lambda: app.server_online, what="the workers online")
        assert app.sender is not None
        sender = app.sender
        workers.say("ingest-2", "offline")  # its last will
        await wait_until(lambda: sender.stats.last_replay_reason == "server worker ingest-2/1 offline",
                         what="a replay for what the dead worker held")
        assert app.server_online and not sender.holding
        app.record(cards(2))
        await wait_until(lambda: len(set(server.seqs("card_read"))) == 2, what="reads sent to the living worker")

        workers.say("ingest-1", "offline")  # the last one goes too
        await wait_until(lambda: sender.holding, what="the gateway to hold")
        assert not app.server_online
        app.record(cards(1))
        await asyncio.sleep(0.3)
        assert len(set(server.seqs("card_read"))) == 2  # held while no worker is there
        server.acking = True
        workers.say("ingest-2", "online", "ingest-2/2")  # a worker restarted
        assert app.outbox is not None
        outbox = app.outbox
        await wait_until(lambda: outbox.depth() == 0, what="everything delivered to the restarted worker")


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[AsyncOutbox]:
    box = await AsyncOutbox.open(str(tmp_path / "outbox.sqlite3"), gateway_id=GW)
    yield box
    await box.close()


async def test_after_a_connect_the_sender_waits_for_the_status_a_second_at_most(outbox: AsyncOutbox) -> None:
    link, clock = FakeLink(), Clock()
    sender = _sender(outbox, link, clock)
    await outbox.append(cards(2))
    sender.expect_server_status(1.0)
    await sender.step()
    assert link.take() == [] and sender.holding
    clock.now += 1.01  # no status came: a broker that keeps none; send
    await sender.step()
    assert link.take() == [[1, 2]] and not sender.holding

    sender.expect_server_status(1.0)  # reconnected
    sender.replay("reconnected")
    sender.set_server_online(True)  # the retained status, at once
    await sender.step()
    assert link.take() == [[1, 2]]
