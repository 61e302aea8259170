"""The HTTP API through aiohttp's in-process test client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from rentgate import wire
from server.app import make_app
from server.ingest.store import EventStore
from server.settings import ServerSettings
from tests.server.auth_helpers import bearer, make_user
from tests.server.helpers import T0, batch, card_read, door_state, message
from tests.services import free_port

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def client(sqlite_engine: sa.Engine, sqlite_url: str, aiohttp_client: MakeClient) -> Client:
    store = EventStore(sqlite_engine)
    store.commit([
        message("gw-a", batch("gw-a", [card_read("gw-a", s, door="door-1" if s % 2 else "door-2")
                                       for s in range(1, 11)])),
        message("gw-b", batch("gw-b", [door_state("gw-b", 1), door_state("gw-b", 3, "closed")])),
        message("gw-b", b"garbage"),
        message("gw-a", wire.GatewayStatus(gw="gw-a", state="online", outbox_depth=3, devices_online=1,
                                           devices_total=2).model_dump_json().encode(), leaf="status"),
    ])
    admin = make_user(sqlite_engine)
    return await aiohttp_client(make_app(ServerSettings(database_url=sqlite_url), ingest=False),
                                headers=bearer(admin.token))


async def get_json(client: Client, path: str, status: int = 200, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status == status, await response.text()
    return await response.json()


async def test_events_filter_by_gateway_door_kind_and_time(client: Client) -> None:
    doc = await get_json(client, "/api/v1/events", gateway="gw-a", door="door-2")
    assert [e["seq"] for e in doc["events"]] == [2, 4, 6, 8, 10]
    assert doc["next"] is None
    assert doc["events"][0]["credential"] == {"format": "em4100", "value": "0A1B2C3D4E"}

    doc = await get_json(client, "/api/v1/events", kind="door_state")
    assert [(e["gateway_id"], e["data"]["state"]) for e in doc["events"]] == [("gw-b", "open"), ("gw-b", "closed")]

    since = (T0 + timedelta(seconds=3)).isoformat()
    until = (T0 + timedelta(seconds=5)).astimezone().isoformat()  # another zone, same instant
    doc = await get_json(client, "/api/v1/events", gateway="gw-a", since=since, until=until)
    assert [e["seq"] for e in doc["events"]] == [3, 4]


async def test_events_pages_with_a_cursor_until_done(client: Client) -> None:
    seen: list[int] = []
    cursor: str | None = ""
    pages = 0
    while cursor is not None:
        doc = await get_json(client, "/api/v1/events", limit=4, after=cursor)
        seen += [e["id"] for e in doc["events"]]
        cursor, pages = doc["next"], pages + 1
    assert pages == 3 and len(seen) == 12 and seen == sorted(set(seen))


@pytest.mark.parametrize("params", [
    {"limit": "0"}, {"limit": "1001"}, {"limit": "ten"}, {"after": "x"}, {"kind": "explosion"},
    {"since": "yesterday"}, {"since": "2024-05-01T08:00:00"}, {"gateway": "a b"}, {"colour": "red"},
    {"since": "2024-05-02T00:00:00Z", "until": "2024-05-01T00:00:00Z"},
])
async def test_bad_parameters_are_400_with_a_json_reason(client: Client, params: dict[str, str]) -> None:
    doc = await get_json(client, "/api/v1/events", 400, **params)
    assert doc["error"] == "bad_parameter" and doc["parameter"] in {*params, "until"}


async def test_gateways_and_dead_letters(client: Client) -> None:
    doc = await get_json(client, "/api/v1/gateways")
    by_id = {g["id"]: g for g in doc["gateways"]}
    assert by_id["gw-a"]["max_seq"] == 10 and by_id["gw-a"]["open_gaps"] == 0
    assert (by_id["gw-a"]["online"], by_id["gw-a"]["outbox_depth"]) == (True, 3)
    assert (by_id["gw-a"]["devices_online"], by_id["gw-a"]["devices_total"]) == (1, 2)
    assert by_id["gw-b"]["open_gaps"] == 1  # seq 2 never arrived

    doc = await get_json(client, "/api/v1/dead-letters", limit=1)
    assert doc["dead_letters"][0]["payload"] == "garbage" and doc["next"] is None
    doc = await get_json(client, "/api/v1/gaps", gateway="gw-b")
    assert [(g["first_seq"], g["last_seq"], g["state"]) for g in doc["gaps"]] == [(2, 2, "open")]


async def test_metrics_are_prometheus_text(client: Client) -> None:
    response = await client.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    text = await response.text()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    for name in ("rentgate_events_ingested_total", "rentgate_duplicates_dropped_total", "rentgate_dead_letters_total",
                 "rentgate_ingest_lag_seconds", "rentgate_commit_errors_total", "rentgate_open_gaps",
                 "rentgate_mqtt_connected", 'rentgate_event_commit_latency_seconds_bucket{le="+Inf"}',
                 "rentgate_reconcile_reads_total", "rentgate_reconcile_lag_events",
                 "rentgate_reconcile_last_sweep_seconds", 'rentgate_cases_open{kind="unregistered_occupant"}',
                 'rentgate_cases_open{kind="presumed_departure"}'):
        float(samples[name])
    assert "# TYPE rentgate_events_ingested_total counter" in text


async def test_healthz_ok_without_ingest(client: Client) -> None:
    assert await get_json(client, "/healthz") == {"status": "ok", "database": "ok", "mqtt": "disabled"}


async def test_healthz_503_when_the_broker_is_unreachable(sqlite_engine: sa.Engine, sqlite_url: str,
                                                          aiohttp_client: MakeClient) -> None:
    settings = ServerSettings(database_url=sqlite_url, mqtt_url=f"mqtt://127.0.0.1:{free_port()}")
    client = await aiohttp_client(make_app(settings))
    doc = await get_json(client, "/healthz", 503)
    assert doc["mqtt"] == "disconnected" and doc["database"] == "ok"


async def test_healthz_503_when_the_database_is_unreachable(tmp_path: Any, aiohttp_client: MakeClient) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "x.db").mkdir()  # a directory where the database file should be
    client = await aiohttp_client(make_app(ServerSettings(database_url=f"sqlite:///{tmp_path}/ro/x.db"),
                                           ingest=False))
    doc = await get_json(client, "/healthz", 503)
    assert doc["database"] == "unreachable"
