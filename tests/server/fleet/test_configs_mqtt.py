"""Configurations through a real Mosquitto: a new version is on the
gateway's topic, retained, right after the change; a subscriber that
connects later (a gateway coming back) gets the newest; versions made by
another process go out with the catch-up; a broker that lost its retained
messages gets every gateway's newest again when the server reconnects,
except a revoked gateway's; and the outcome task turns a gateway's status
into the version's outcome."""

from __future__ import annotations

import asyncio
import queue
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from rentgate import signing, wire
from server.app import make_app
from server.db.models import gateway_configs, gateways
from server.fleet import configs
from server.fleet.config_service import CONFIGS
from tests.server.auth_helpers import bearer
from tests.server.fleet.config_helpers import World, config_settings, report_status, seed, signing_key
from tests.server.registry.api_helpers import Client, MakeClient

TIMEOUT = 10.0


class Subscriber:
    """Listens on gateways' configuration topics as a gateway would."""

    def __init__(self, url: str, *gateway_ids: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        port = int(url.rsplit(":", 1)[1])
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-sub-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload), bool(m.retain)))
        topics = [(wire.config_topic(gw), 1) for gw in gateway_ids]
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topics) if topics else None
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def next(self, timeout: float = TIMEOUT) -> tuple[str, wire.RemoteConfig, bool]:
        topic, payload, retained = self.messages.get(timeout=timeout)
        return topic, wire.decode_remote_config(wire.decode_signed_config(payload).payload), retained

    def version_of(self, gw: str, timeout: float = TIMEOUT) -> int:
        deadline = time.monotonic() + timeout
        while True:
            topic, config, _ = self.next(max(0.01, deadline - time.monotonic()))
            if topic == wire.config_topic(gw):
                return config.version

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscribe(mosquitto: Any) -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(*gateway_ids: str) -> Subscriber:
        made.append(Subscriber(mosquitto.url, *gateway_ids))
        return made[-1]

    yield make
    for sub in made:
        sub.close()


@pytest.fixture
async def setup(mosquitto: Any, sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path,
                aiohttp_client: MakeClient) -> AsyncIterator[tuple[Client, World]]:
    settings = config_settings(sqlite_url, tmp_path, mqtt_url=mosquitto.url,
                               mqtt_client_id=f"server-{uuid.uuid4().hex[:8]}")
    world = seed(sqlite_engine)
    client = await aiohttp_client(make_app(settings))
    publisher = client.app[CONFIGS].publisher
    assert publisher is not None
    await asyncio.to_thread(publisher.link.wait_connected, TIMEOUT)
    yield client, world


async def put(client: Client, gw: str, token: str, settings: dict[str, Any]) -> dict[str, Any]:
    response = await client.put(f"/api/v1/gateways/{gw}/config", json={"settings": settings}, headers=bearer(token))
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_a_new_version_is_retained_on_the_gateways_topic(
        setup: tuple[Client, World], subscribe: Callable[..., Subscriber], sqlite_engine: sa.Engine,
        tmp_path: Path) -> None:
    client, w = setup
    live = subscribe("gw-a1")
    made = await put(client, "gw-a1", w.landlord_a.token, {"heartbeat_s": 11})
    assert made["published"] is True
    topic, config, _ = await asyncio.to_thread(live.next)
    assert (topic, config.gw, config.version, config.settings) == (wire.config_topic("gw-a1"), "gw-a1", 1,
                                                                   {"heartbeat_s": 11})
    await put(client, "gw-a1", w.landlord_a.token, {"heartbeat_s": 12})
    assert await asyncio.to_thread(live.version_of, "gw-a1") == 2
    # A gateway that connects now gets the newest, retained, signed by the allowlist key.
    later = subscribe("gw-a1")
    topic, config, retained = await asyncio.to_thread(later.next)
    assert retained and config.version == 2 and config.settings == {"heartbeat_s": 12}
    metrics = await (await client.get("/metrics")).text()
    assert 'rentgate_config_messages_total{result="published"} 2' in metrics
    keys = (await (await client.get("/api/v1/allowlist-keys", headers=bearer(w.admin.token))).json())["keys"]
    with sqlite_engine.connect() as conn:
        message = configs.published_message(conn, "gw-a1")
    signed = wire.decode_signed_config(message or b"")
    assert signing.verify(signed.payload.encode(), signed.signature,
                          {k: signing.load_public_key(v) for k, v in keys.items()}, signed.key_id)


async def test_versions_made_by_another_process_go_out_with_the_catch_up(
        setup: tuple[Client, World], subscribe: Callable[..., Subscriber], sqlite_engine: sa.Engine,
        sqlite_url: str, tmp_path: Path) -> None:
    client, w = setup
    live = subscribe("gw-b1")
    key = signing_key(config_settings(sqlite_url, tmp_path))  # the same key file as the server's
    with sqlite_engine.begin() as conn:
        configs.create_version(conn, datetime.now(UTC), gateway_id="gw-b1", settings={"heartbeat_s": 9}, key=key)
    publisher = client.app[CONFIGS].publisher
    assert publisher is not None
    await publisher.catch_up_once()
    topic, config, _ = await asyncio.to_thread(live.next)
    assert topic == wire.config_topic("gw-b1") and config.version == 1
    # Published once: the next round has nothing to do.
    before = publisher.counters["published"]
    await publisher.catch_up_once()
    assert publisher.counters["published"] == before


async def test_a_reconnect_republishes_every_gateways_newest_but_not_a_revoked_ones(
        setup: tuple[Client, World], subscribe: Callable[..., Subscriber], sqlite_engine: sa.Engine,
        mosquitto: Any) -> None:
    client, w = setup
    await put(client, "gw-a1", w.admin.token, {"heartbeat_s": 11})
    await put(client, "gw-a1", w.admin.token, {"heartbeat_s": 12})
    await put(client, "gw-a2", w.admin.token, {"heartbeat_s": 13})
    # The broker forgets its retained messages (a new broker, a lost store).
    eraser = subscribe()
    for gw in ("gw-a1", "gw-a2"):
        eraser.client.publish(wire.config_topic(gw), b"", qos=1, retain=True).wait_for_publish(TIMEOUT)
    with sqlite_engine.begin() as conn:
        conn.execute(sa.update(gateways).where(gateways.c.id == "gw-a2").values(revoked_at=datetime.now(UTC)))
    publisher = client.app[CONFIGS].publisher
    assert publisher is not None
    await asyncio.to_thread(mosquitto.stop)
    await asyncio.to_thread(mosquitto.start)
    deadline = time.monotonic() + 30
    while publisher.counters["published"] < 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    later = subscribe("gw-a1", "gw-a2")
    topic, config, retained = await asyncio.to_thread(later.next)
    assert (topic, config.version, retained) == (wire.config_topic("gw-a1"), 2, True)
    with pytest.raises(queue.Empty):
        await asyncio.to_thread(later.next, 1.0)  # nothing for the revoked gateway


async def test_the_outcome_task_records_what_the_gateway_reports(
        setup: tuple[Client, World], sqlite_engine: sa.Engine) -> None:
    client, w = setup
    await put(client, "gw-a1", w.admin.token, {"heartbeat_s": 11})
    report_status(sqlite_engine, "gw-a1", running=1, attempted=1, state="applied")
    deadline = time.monotonic() + TIMEOUT
    outcome = None
    while outcome is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        with sqlite_engine.connect() as conn:
            outcome = conn.execute(sa.select(gateway_configs.c.outcome)).scalar()
    assert outcome == "applied"
    shown = await (await client.get("/api/v1/gateways/gw-a1/config", headers=bearer(w.admin.token))).json()
    assert shown["outcome"] == "applied" and shown["running"]["version"] == 1
