"""Signed allowlists through a real Mosquitto into the gateway's own
AllowlistStore: what a gateway at the door would decide after each change."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from gateway.access.store import AllowlistStore, ApplyResult
from rentgate import signing, wire
from server.access.routes import ACCESS
from server.app import make_app
from server.settings import ServerSettings
from tests.server.access.test_api import call, end, id_number, register, tenant
from tests.server.auth_helpers import bearer, make_user

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
GW = "gw-door-1"
TIMEOUT = 10.0
CARD = wire.Credential(format="em4100", value="14008EC793")


async def until(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return result


class DoorGateway:
    """Subscribes as a gateway does, applies what arrives to a real store and
    asks for a snapshot when a delta does not follow."""

    def __init__(self, url: str, store: AllowlistStore) -> None:
        self.store = store
        self.results: list[tuple[str, ApplyResult]] = []
        self.raw: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._lock = threading.Lock()
        port = int(url.rsplit(":", 1)[1])
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"door-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(
            [(wire.allowlist_topic(store.gateway_id), 1), (wire.allowlist_delta_topic(store.gateway_id), 1)])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        self.raw.put((msg.topic, payload))
        with self._lock:
            result = self.store.apply(payload)
            self.results.append((msg.topic, result))
        if result.need_snapshot:
            self.ask()

    def ask(self) -> None:
        request = wire.AllowlistRequest(gw=self.store.gateway_id, have_version=self.store.version, reason="test")
        self.client.publish(wire.allowlist_request_topic(self.store.gateway_id),
                            request.model_dump_json(exclude_none=True), qos=1)

    def applied_versions(self) -> list[int]:
        with self._lock:
            return [r.version for _, r in self.results if r.applied and r.version is not None]

    def snapshots_received(self) -> int:
        with self._lock:
            return sum(1 for topic, _ in self.results if topic == wire.allowlist_topic(self.store.gateway_id))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
async def client(mosquitto: Any, sqlite_engine: sa.Engine, sqlite_url: str,
                 aiohttp_client: MakeClient) -> AsyncIterator[Client]:
    settings = ServerSettings(database_url=sqlite_url, mqtt_url=mosquitto.url,
                              mqtt_client_id=f"server-{uuid.uuid4().hex[:8]}")
    admin = make_user(sqlite_engine)
    client = await aiohttp_client(make_app(settings), headers=bearer(admin.token))
    publisher = client.app[ACCESS].publisher
    assert publisher is not None
    await asyncio.to_thread(publisher.link.wait_connected, TIMEOUT)
    yield client


@pytest.fixture
def make_gateway(mosquitto: Any, tmp_path: Path) -> Iterator[Callable[[dict[str, str]], DoorGateway]]:
    made: list[DoorGateway] = []

    def make(keys: dict[str, str]) -> DoorGateway:
        public = {key_id: signing.load_public_key(text) for key_id, text in keys.items()}
        store = AllowlistStore(tmp_path / f"allowlist-{len(made)}.db", GW, public)
        made.append(DoorGateway(mosquitto.url, store))
        return made[-1]

    yield make
    for gw in made:
        gw.close()
        gw.store.close()


async def test_register_and_end_reach_the_gateways_store(
        client: Client, make_gateway: Callable[[dict[str, str]], DoorGateway]) -> None:
    keys = (await call(client, "GET", "/api/v1/allowlist-keys"))["keys"]
    t = await tenant(client, gw=GW)
    door = make_gateway(keys)
    await until(lambda: door.store.version is not None, "the retained snapshot")
    assert door.store.lookup(CARD) is None and not door.store.is_revoked(CARD)

    reg = await register(client, t["unit"], CARD.value)
    assert reg["published"] is True
    entry = await until(lambda: door.store.lookup(CARD), "the registered card at the gateway")
    assert entry.person == f"p-{reg['person_id']}"

    # What arrived verifies with the key the API hands out.
    topic, message = door.raw.get(timeout=TIMEOUT)
    envelope = wire.decode_signed_allowlist(message)
    public = {k: signing.load_public_key(v) for k, v in keys.items()}
    assert signing.verify(envelope.payload.encode(), envelope.signature, public, envelope.key_id)

    started = time.monotonic()
    ended = await end(client, reg["id"])
    assert ended["revoked_credentials"] == 1 and ended["published"] is True
    # Seconds, not the minutes of a periodic sync; the figure itself (tens of
    # milliseconds) is bench/door.py's revocation_s_p99 to measure, as a loaded
    # test machine can stall for a second.
    await until(lambda: door.store.is_revoked(CARD), "the revocation at the gateway", timeout=5.0)
    assert door.store.lookup(CARD) is None
    assert time.monotonic() - started < 5.0

    versions = door.applied_versions()
    assert versions == sorted(set(versions)) and versions[-1] == ended["allowlist_versions"][GW]

    # A gateway installed afterwards learns the card is revoked, not unknown.
    fresh = make_gateway(keys)
    await until(lambda: fresh.store.version == versions[-1], "the snapshot at a fresh gateway")
    assert fresh.store.is_revoked(CARD)


async def test_a_request_brings_a_fresh_snapshot(client: Client,
                                                 make_gateway: Callable[[dict[str, str]], DoorGateway]) -> None:
    keys = (await call(client, "GET", "/api/v1/allowlist-keys"))["keys"]
    await tenant(client, gw=GW)
    door = make_gateway(keys)
    await until(lambda: door.snapshots_received() == 1, "the retained snapshot")
    door.ask()
    await until(lambda: door.snapshots_received() == 2, "a snapshot answering the request")
    publisher = client.app[ACCESS].publisher
    assert publisher is not None and publisher.counters["requests"] == 1


async def test_changes_made_while_the_broker_is_down_arrive_on_reconnect(
        client: Client, mosquitto: Any, make_gateway: Callable[[dict[str, str]], DoorGateway]) -> None:
    keys = (await call(client, "GET", "/api/v1/allowlist-keys"))["keys"]
    t = await tenant(client, gw=GW)
    door = make_gateway(keys)
    await until(lambda: door.store.version is not None, "the retained snapshot")

    await asyncio.to_thread(mosquitto.stop)
    publisher = client.app[ACCESS].publisher
    assert publisher is not None
    await until(lambda: not publisher.link.connected.is_set(), "the publisher to notice")
    reg = await register(client, t["unit"], CARD.value)
    assert reg["published"] is False

    await asyncio.to_thread(mosquitto.start)
    await until(lambda: door.store.lookup(CARD), "the card after the broker came back", timeout=30.0)


@pytest.fixture
def fast_catch_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set before the server starts: the catch-up task reads it per round."""
    from server.access import publisher as publisher_module

    monkeypatch.setattr(publisher_module, "CATCH_UP_INTERVAL_S", 0.05)


async def test_a_change_committed_by_another_process_reaches_the_gateway(
        fast_catch_up: None, client: Client, sqlite_engine: sa.Engine,
        make_gateway: Callable[[dict[str, str]], DoorGateway]) -> None:
    """What `rentgate import` does: commit list changes without publishing."""
    from datetime import UTC, datetime, timedelta

    from server.registry import service
    from server.registry.appkeys import VAULT
    from server.web.transactions import write_transaction

    keys = (await call(client, "GET", "/api/v1/allowlist-keys"))["keys"]
    t = await tenant(client, gw=GW)
    door = make_gateway(keys)
    await until(lambda: door.store.version is not None, "the retained snapshot")
    now = datetime.now(UTC)
    with write_transaction(sqlite_engine) as conn:
        service.register(conn, now, "import:test.csv", client.app[VAULT], unit_id=t["unit"],
                         person=service.PersonFields(id_number=id_number(1), name="Li Wei"),
                         arrived_at=now - timedelta(days=1), source="import", credential=("em4100", CARD.value))
    await until(lambda: door.store.lookup(CARD), "the card committed outside the server")
