"""The two engines the ingest tests run on, and real gateways to drive them.

* ``mosquitto``: one Mosquitto; ingest subscribes to the events over MQTT
  (ingest_source=mqtt).
* ``nats``: three NATS nodes with JetStream; gateways speak MQTT to any node,
  ingest pulls the events from the JetStream work queue
  (ingest_source=jetstream, docs/clustering.md) and answers over MQTT.

A gateway here is the real ``GatewayApp`` (outbox, sender, MQTT link) run in
the test's loop, without devices: the test writes card reads into its outbox
as a reader would, and the gateway deletes each one only when the server
acknowledges it after its commit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import sqlalchemy as sa

from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from rentgate import wire
from server.ingest.jetstream import CONSUMER, STREAM
from server.settings import ServerSettings
from tests.gateway.helpers import card
from tests.services import Mosquitto, MqttProbe, NatsCluster

ACK_WAIT_S = 2.0
# Below the test nodes' max_file_store (tests/services.py nats_config).
STREAM_MAX_BYTES = 256 * 1024**2


@dataclass
class Engine:
    name: str
    # Where gateways may connect: one URL per broker node.
    gateway_urls: list[str]
    mosquitto: Mosquitto | None = None
    cluster: NatsCluster | None = None

    @property
    def server_mqtt_url(self) -> str:
        return self.gateway_urls[0]

    def settings(self, database_url: str, **changes: Any) -> ServerSettings:
        values: dict[str, Any] = {"database_url": database_url, "mqtt_url": self.server_mqtt_url,
                                  "mqtt_client_id": f"server-{uuid.uuid4().hex[:8]}", "gap_resend_delay_s": 0.5}
        if self.cluster is not None:
            values |= {"ingest_source": "jetstream", "nats_url": self.cluster.nats_url,
                       "mqtt_fallback_urls": ",".join(self.gateway_urls[1:]),
                       "nats_ack_wait_s": ACK_WAIT_S, "nats_stream_max_bytes": STREAM_MAX_BYTES}
        return ServerSettings(**(values | changes))

    def environment(self, database_url: str) -> dict[str, str]:
        """The same as RENTGATE_* variables, for ``rentgate server`` processes."""
        env = {"RENTGATE_DATABASE_URL": database_url, "RENTGATE_MQTT_URL": self.server_mqtt_url}
        if self.cluster is not None:
            env |= {"RENTGATE_INGEST_SOURCE": "jetstream", "RENTGATE_NATS_URL": self.cluster.nats_url,
                    "RENTGATE_MQTT_FALLBACK_URLS": ",".join(self.gateway_urls[1:]),
                    "RENTGATE_NATS_ACK_WAIT_S": str(ACK_WAIT_S),
                    "RENTGATE_NATS_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES)}
        return env

    def reset(self) -> None:
        """Between tests on a shared cluster: no server status retained from the
        last test (a gateway would hold on an old "offline"), no stream."""
        if self.cluster is None:
            return
        running = [n for n in self.cluster.nodes if n.running]
        probe = MqttProbe(running[0].host, running[0].mqtt_port).connect()
        probe.publish(wire.SERVER_STATUS_TOPIC, b"", retain=True)
        probe.close()
        asyncio.run(_delete_stream([n.url for n in running]))


async def _delete_stream(urls: list[str], timeout: float = 20.0) -> None:
    """Retried: right after a node is lost the stream may be electing a leader."""
    nc = await nats.connect(urls, connect_timeout=2, max_reconnect_attempts=2)
    try:
        js = nc.jetstream(timeout=2)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await js.delete_stream(STREAM)
                return
            except nats.js.errors.NotFoundError:
                return
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def consumer_waiting(urls: list[str]) -> tuple[int, int]:
    """(pull requests waiting, messages delivered and not yet acknowledged) of
    the ingest consumer: each live worker keeps one pull request waiting."""
    nc = await nats.connect(urls, connect_timeout=2, max_reconnect_attempts=2)
    try:
        info = await nc.jetstream(timeout=2).consumer_info(STREAM, CONSUMER)
        return int(info.num_waiting or 0), int(info.num_ack_pending or 0)
    except (nats.js.errors.NotFoundError, nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
        return 0, 0  # not made yet, or its leader being elected: ask again
    finally:
        await nc.close()


async def stream_messages(urls: list[str]) -> int | None:
    """Messages in the work queue: each leaves it when a worker acknowledges
    it. None while the stream cannot answer."""
    nc = await nats.connect(urls, connect_timeout=2, max_reconnect_attempts=2)
    try:
        info = await nc.jetstream(timeout=2).stream_info(STREAM)
        return int(info.state.messages)
    except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
        return None
    finally:
        await nc.close()


class LiveGateway:
    """A real gateway in this loop; ``add(n)`` is n card reads at its door."""

    def __init__(self, gateway_id: str, mqtt_url: str, data_dir: Path, *, ack_timeout_s: float = 15.0,
                 fallback_urls: list[str] | None = None) -> None:
        self.gateway_id = gateway_id
        self.config = GatewayConfig.model_validate({
            "gateway_id": gateway_id, "mqtt_url": mqtt_url, "mqtt_fallback_urls": fallback_urls or [],
            "data_dir": str(data_dir), "heartbeat_s": 5, "outbox": {"ack_timeout_s": ack_timeout_s}, "devices": [],
        })
        self.app = GatewayApp(self.config)
        self.cards: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> LiveGateway:
        self._task = asyncio.create_task(self.app.run(), name=f"gateway-{self.gateway_id}")
        ready = asyncio.create_task(self.app.ready.wait())
        await asyncio.wait([self._task, ready], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            self._task.result()
        assert self.app.link is not None
        assert await asyncio.to_thread(self.app.link.wait_subscribed, 10), f"{self.gateway_id} did not connect"
        return self

    async def add(self, n: int) -> None:
        assert self.app.outbox is not None
        values = [f"{len(self.cards) + i:010X}" for i in range(n)]
        self.cards += values
        await self.app.outbox.append([card(v, gw=self.gateway_id) for v in values])

    def depth(self) -> int:
        assert self.app.outbox is not None
        return self.app.outbox.depth()

    @property
    def published(self) -> int:
        assert self.app.sender is not None
        return self.app.sender.stats.published_events

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self.app.stop()
            await asyncio.wait_for(self._task, 15)


def stored_cards(engine: sa.Engine, gateway_id: str) -> Counter[str]:
    """Each card read of a gateway in the database, with how often it is there."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT credential_value FROM events WHERE gateway_id = :gw "
                                    "AND kind = 'card_read'"), {"gw": gateway_id})
        return Counter(str(value) for (value,) in rows)


async def until(predicate: Any, timeout: float, what: str, interval: float = 0.05,
                watch: asyncio.Task[None] | None = None) -> None:
    """Await until ``predicate()`` (sync, may query the database) is truthy;
    fail at once with its error if ``watch`` (the service under test) ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(predicate):
        if watch is not None and watch.done():
            watch.result()
            raise AssertionError(f"the service ended while waiting for {what}")
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


def outbox_cards(gateway: LiveGateway) -> int:
    """Card reads still in a gateway's outbox, not yet acknowledged (read
    beside the running gateway: WAL allows it). Other events (its heartbeat,
    which it holds while a retained status says the server is offline) are
    not counted."""
    import sqlite3

    db = sqlite3.connect(f"file:{gateway.config.outbox_path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT count(*) FROM events WHERE json LIKE '%\"kind\":\"card_read\"%'").fetchone()
    finally:
        db.close()
    return int(row[0])

