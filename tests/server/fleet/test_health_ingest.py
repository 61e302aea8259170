"""Fleet health through the real ingest path: a gateway status published on
a real Mosquitto lands in the gateways row with every field and the clock
skew; a client killed with SIGKILL is marked offline by its last will within
a second or two; a revoked gateway's events are dead-lettered and
acknowledged as rejected, its statuses not applied; bad statuses are dead
letters, not crashes; /metrics counts the fleet by state. The retained-copy
rule of the clock skew is checked on the store itself, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from rentgate import wire
from server.app import make_app
from server.db.models import dead_letters, gateways
from server.fleet import health
from server.ingest import consumer
from server.ingest.appkeys import INGEST
from server.ingest.parse import REVOKED_REASON
from server.ingest.store import EventStore
from server.settings import ServerSettings
from tests.server.auth_helpers import bearer, make_user
from tests.server.helpers import batch, card_read, message
from tests.server.mqtt_gateway import FakeGateway

Client = TestClient[web.Request, web.Application]
GW = "gw-health-1"


def full_status(ts: datetime | None, **changes: Any) -> wire.GatewayStatus:
    fields: dict[str, Any] = {
        "gw": GW, "state": "online", "ts": ts, "version": "0.9.0", "boot_id": "b-1", "outbox_depth": 12,
        "oldest_unsent_age_s": 4.5, "dropped_total": 0, "rejected_total": 1, "devices_online": 1,
        "devices_total": 2, "allowlist_version": 7,
        "devices": [wire.DeviceHealth(id="reader-1", type="reader", state="ok", last_seen_s=0.4),
                    wire.DeviceHealth(id="cam-1", type="camera", state="no_frames", last_seen_s=95.0,
                                      detail="no frame for 95 s")],
        "disk_free_bytes": 3_000_000_000, "disk_total_bytes": 16_000_000_000, "mem_rss_bytes": 90_000_000,
        "mem_available_bytes": 700_000_000, "config_version": 4, "config_attempted": 5,
        "config_state": "rolled_back", "config_error": "gate failed: cam-1 delivered no frames",
    }
    fields.update(changes)
    return wire.GatewayStatus(**fields)


def encoded(status: wire.GatewayStatus) -> bytes:
    return status.model_dump_json(exclude_none=True).encode()


def row_of(engine: sa.Engine, gw: str = GW) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(gateways).where(gateways.c.id == gw)).mappings().first()
        return dict(row) if row is not None else None


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "the row") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- the store (both databases)

def test_a_retained_copy_handed_over_again_keeps_the_skew(engine: sa.Engine) -> None:
    store = EventStore(engine)
    t = datetime.now(UTC) - timedelta(hours=1)
    topic = wire.status_topic(GW)
    store.commit([(topic, encoded(full_status(t)), t + timedelta(seconds=5))])
    row = row_of(engine)
    assert row is not None and row["clock_skew_s"] == pytest.approx(5.0)
    # The broker hands the same retained status over when ingest subscribes again.
    store.commit([(topic, encoded(full_status(t)), t + timedelta(minutes=10))])
    assert row_of(engine)["clock_skew_s"] == pytest.approx(5.0)  # type: ignore[index]
    # A newer one measures again; a gateway clock ahead is a negative skew.
    later = t + timedelta(minutes=20)
    store.commit([(topic, encoded(full_status(later, config_state="applied", config_attempted=5, config_version=5,
                                               config_error=None)), later - timedelta(seconds=3))])
    row = row_of(engine)
    assert row is not None and row["clock_skew_s"] == pytest.approx(-3.0)
    assert (row["config_state"], row["config_version"], row["config_error"]) == ("applied", 5, None)
    # The last will (no time, no counters): offline, and nothing else blanked.
    store.commit([(topic, encoded(wire.GatewayStatus(gw=GW, state="offline")), later + timedelta(seconds=30))])
    row = row_of(engine)
    assert row is not None and row["online"] is False
    assert row["clock_skew_s"] == pytest.approx(-3.0) and row["disk_free_bytes"] == 3_000_000_000
    assert row["devices_health"][1]["state"] == "no_frames"


def test_nul_in_a_devices_text_is_stored_not_a_poison_batch(engine: sa.Engine) -> None:
    store = EventStore(engine)
    status = full_status(datetime.now(UTC), devices=[
        wire.DeviceHealth(id="reader-1", type="reader", state="offline", detail="bad\x00frame")])
    store.commit([(wire.status_topic(GW), encoded(status), datetime.now(UTC))])
    row = row_of(engine)
    assert row is not None and row["devices_health"] == [
        {"id": "reader-1", "type": "reader", "state": "offline", "detail": "bad\ufffdframe"}]


def test_terminals_sync_states_are_stored_and_those_behind_counted(engine: sa.Engine) -> None:
    """A gateway keeping its door terminals' own user lists says where each
    stands; the server keeps that and counts the terminals that do not hold
    the gateway's allowlist (allowlist_version 7 here): the one that could
    not be reached, the one refusing writes, the one still writing and the
    one on version 6, not the one on 7. A later status without terminals (an
    older gateway) leaves them as they were."""
    store = EventStore(engine)
    synced = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    terminals = [wire.TerminalSyncHealth(id="lobby", reachable=True, version_held=7, last_full_sync=synced),
                 wire.TerminalSyncHealth(id="back-door", reachable=False, version_held=7,
                                         last_error="connection refused"),
                 wire.TerminalSyncHealth(id="garage", reachable=True, version_held=7, writes_refused=3),
                 wire.TerminalSyncHealth(id="roof", reachable=True, version_held=6, pending=2),
                 wire.TerminalSyncHealth(id="side", reachable=True, version_held=6)]
    now = datetime.now(UTC)
    store.commit([(wire.status_topic(GW), encoded(full_status(now, terminals=terminals)), now)])
    row = row_of(engine)
    assert row is not None and row["terminals_behind"] == 4
    assert [t["id"] for t in row["terminals_health"]] == ["lobby", "back-door", "garage", "roof", "side"]
    assert row["terminals_health"][0] == {"id": "lobby", "reachable": True, "version_held": 7, "pending": 0,
                                          "writes_refused": 0, "last_full_sync": "2026-12-06T03:00:00Z"}
    later = now + timedelta(seconds=30)
    store.commit([(wire.status_topic(GW), encoded(full_status(later)), later)])
    row = row_of(engine)
    assert row is not None and row["terminals_behind"] == 4 and len(row["terminals_health"]) == 5


def test_a_revoked_gateways_messages_are_refused_by_the_store(engine: sa.Engine) -> None:
    store = EventStore(engine)
    store.revoked = frozenset({GW})
    result = store.commit([message(GW, batch(GW, [card_read(GW, 1), card_read(GW, 2)])),
                           message(GW, encoded(full_status(datetime.now(UTC))), leaf="status")])
    assert result.inserted == 0 and result.outcomes["dead_lettered"] == 2
    outcome = result.gateways[GW]
    assert outcome.rejected == [(1, 2)] and outcome.committed == []
    assert row_of(engine) is None  # its row is not touched (here: not even made)
    with engine.connect() as conn:
        reasons = conn.execute(sa.select(dead_letters.c.reason)).scalars().all()
    assert reasons == [REVOKED_REASON, REVOKED_REASON]


# ---------------------------------------------------------------- the whole server on a real Mosquitto

@pytest.fixture
def settings(mosquitto: Any, sqlite_url: str) -> ServerSettings:
    return ServerSettings(database_url=sqlite_url, mqtt_url=mosquitto.url,
                          mqtt_client_id=f"server-{uuid.uuid4().hex[:8]}", fleet_offline_after_s=30)


@pytest.fixture
def gateway(mosquitto: Any) -> Iterator[FakeGateway]:
    fake = FakeGateway(mosquitto.url, GW)
    yield fake
    fake.close()


@pytest.fixture
async def server(settings: ServerSettings, sqlite_engine: sa.Engine, gateway: FakeGateway,
                 monkeypatch: pytest.MonkeyPatch, aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    monkeypatch.setattr(consumer, "REFRESH_S", 0.2)
    monkeypatch.setattr(health, "METRICS_REFRESH_S", 0.2)
    admin = make_user(sqlite_engine)
    client = await aiohttp_client(make_app(settings), headers=bearer(admin.token))
    assert (await gateway.server_status()).state == "online"
    return client


async def test_a_status_lands_in_the_row_with_every_field_and_the_skew(server: Client, gateway: FakeGateway,
                                                                       sqlite_engine: sa.Engine) -> None:
    gateway.publish(encoded(full_status(datetime.now(UTC) - timedelta(seconds=120))), leaf="status")
    row = await until(lambda: row_of(sqlite_engine))
    assert row["online"] is True and row["outbox_depth"] == 12 and row["oldest_unsent_age_s"] == 4.5
    assert 119 < row["clock_skew_s"] < 125
    assert row["devices_health"] == [
        {"id": "reader-1", "type": "reader", "state": "ok", "last_seen_s": 0.4},
        {"id": "cam-1", "type": "camera", "state": "no_frames", "last_seen_s": 95.0, "detail": "no frame for 95 s"}]
    assert (row["disk_free_bytes"], row["disk_total_bytes"]) == (3_000_000_000, 16_000_000_000)
    assert (row["mem_rss_bytes"], row["mem_available_bytes"]) == (90_000_000, 700_000_000)
    assert (row["config_version"], row["config_attempted"], row["config_state"], row["config_error"]) == (
        4, 5, "rolled_back", "gate failed: cam-1 delivered no frames")
    assert health.fleet_state(row, datetime.now(UTC), ServerSettings()) == "config_failed"
    # Without a time of its own: no skew.
    gateway.publish(encoded(full_status(None, config_state=None)), leaf="status")
    await until(lambda: row_of(sqlite_engine)["clock_skew_s"] is None, what="the skew to clear")  # type: ignore[index]
    # /metrics counts it (the gauges are refreshed every 0.2 s here).
    async def scrape() -> str:
        return await (await server.get("/metrics")).text()

    deadline = time.monotonic() + 10
    while 'rentgate_fleet_gateways{state="config_failed"} 1' not in (body := await scrape()):
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)
    assert "rentgate_fleet_outbox_events 12" in body
    assert 'rentgate_fleet_gateways{state="offline"} 0' in body


WILL_CLIENT = """
import sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
port, gw, will, online = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode(), sys.argv[4].encode()
client = paho.Client(CallbackAPIVersion.VERSION2, client_id="will-" + gw)
client.will_set(f"rentgate/v1/gw/{gw}/status", will, qos=1, retain=True)
client.connect("127.0.0.1", port, keepalive=60)
client.loop_start()
client.publish(f"rentgate/v1/gw/{gw}/status", online, qos=1, retain=True).wait_for_publish(10)
print("ready", flush=True)
time.sleep(600)
"""


async def test_the_last_will_marks_a_killed_gateway_offline_at_once(server: Client, mosquitto: Any,
                                                                    sqlite_engine: sa.Engine) -> None:
    gw = "gw-will-1"
    will = encoded(wire.GatewayStatus(gw=gw, state="offline"))
    online = encoded(full_status(datetime.now(UTC), gw=gw))
    proc = subprocess.Popen([sys.executable, "-c", WILL_CLIENT, str(mosquitto.port), gw, will.decode(),
                             online.decode()], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        await until(lambda: (row_of(sqlite_engine, gw) or {}).get("online") is True, what="online")
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # The broker's last will, at once: seconds, not the keepalive's minute
        # and a half (a loaded test machine can stall for a second or two).
        await until(lambda: (row_of(sqlite_engine, gw) or {}).get("online") is False, timeout=10, what="offline")
        assert time.monotonic() - killed < 5.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    row = row_of(sqlite_engine, gw)
    assert row is not None and row["disk_free_bytes"] == 3_000_000_000  # the will blanks nothing
    assert health.fleet_state(row, datetime.now(UTC), ServerSettings()) == "offline"


async def test_a_revoked_gateway_is_refused_at_ingest(server: Client, gateway: FakeGateway,
                                                      sqlite_engine: sa.Engine) -> None:
    gateway.publish(batch(GW, [card_read(GW, 1)]))
    await gateway.next_ack(lambda a: a.committed == [(1, 1)])
    gateway.publish(encoded(full_status(datetime.now(UTC))), leaf="status")
    await until(lambda: (row_of(sqlite_engine) or {}).get("version") == "0.9.0", what="the status")
    with sqlite_engine.begin() as conn:
        conn.execute(gateways.update().where(gateways.c.id == GW).values(revoked_at=datetime.now(UTC)))
    ingest = server.app[INGEST]
    await until(lambda: GW in ingest.store.revoked, what="the revoked set to refresh")
    gateway.publish(encoded(full_status(datetime.now(UTC), version="6.6.6", outbox_depth=99)), leaf="status")
    gateway.publish(batch(GW, [card_read(GW, 2), card_read(GW, 3)]))
    ack = await gateway.next_ack(lambda a: bool(a.rejected))
    assert ack.rejected == [(2, 3)] and ack.committed == []
    row = row_of(sqlite_engine)
    assert row is not None and row["version"] == "0.9.0" and row["outbox_depth"] == 12 and row["max_seq"] == 1
    with sqlite_engine.connect() as conn:
        letters = conn.execute(sa.select(dead_letters.c.reason, dead_letters.c.topic)
                               .order_by(dead_letters.c.id)).tuples().all()
    assert letters == [(REVOKED_REASON, wire.status_topic(GW)), (REVOKED_REASON, wire.events_topic(GW))]


async def test_bad_statuses_are_dead_letters_not_crashes(server: Client, gateway: FakeGateway,
                                                         sqlite_engine: sa.Engine) -> None:
    good = json.loads(encoded(full_status(datetime.now(UTC))))
    too_many = {**good, "devices": [{"id": f"r{i}", "type": "reader", "state": "ok"}
                                    for i in range(wire.MAX_STATUS_DEVICES + 1)]}
    bad_state = {**good, "devices": [{"id": "r1", "type": "reader", "state": "exploded"}]}
    negative_disk = {**good, "disk_free_bytes": -1}
    other_gateway = {**good, "gw": "gw-someone-else"}
    for payload in (b"{not json", json.dumps(too_many).encode(), json.dumps(bad_state).encode(),
                    json.dumps(negative_disk).encode(), json.dumps(other_gateway).encode()):
        gateway.publish(payload, leaf="status")
    # MQTT keeps one publisher's messages in order: once this event is
    # acknowledged, the statuses before it have been dealt with.
    gateway.publish(batch(GW, [card_read(GW, 1)]))
    await gateway.next_ack(lambda a: a.committed == [(1, 1)])
    with sqlite_engine.connect() as conn:
        reasons = conn.execute(sa.select(dead_letters.c.reason).order_by(dead_letters.c.id)).scalars().all()
    assert len(reasons) == 5 and all(r.startswith(("bad gateway status", "status names gateway")) for r in reasons)
    assert "devices" in reasons[1] and "devices" in reasons[2]
    row = row_of(sqlite_engine)
    assert row is not None and row["status_at"] is None and row["devices_health"] is None
    # A good one after them is stored: ingest went on.
    gateway.publish(json.dumps(good).encode(), leaf="status")
    await until(lambda: (row_of(sqlite_engine) or {}).get("online") is True, what="the good status")
