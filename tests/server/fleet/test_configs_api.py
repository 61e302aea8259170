"""The remote-configuration API: who may read and change a gateway's
configuration (an administrator; the landlord of its building, for whom
another landlord's gateway looks like a missing one), what a bad change is
answered (a clear 4xx naming each setting, and nothing stored), a revoked
gateway, and the history with who changed what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rentgate import signing, wire
from server.app import make_app
from server.db.models import gateway_configs
from tests.server.auth_helpers import bearer, make_user
from tests.server.fleet.config_helpers import GOOD, World, add_gateway, config_settings, report_status, seed
from tests.server.registry.api_helpers import Client, MakeClient


@pytest.fixture
async def setup(engine: sa.Engine, database_url: str, tmp_path: Path,
                aiohttp_client: MakeClient) -> tuple[Client, World]:
    client = await aiohttp_client(make_app(config_settings(database_url, tmp_path), ingest=False))
    return client, seed(engine)


async def call(client: Client, method: str, path: str, token: str, body: Any = None,
               status: int = 200) -> Any:
    response = await client.request(method, path, json=body, headers=bearer(token))
    text = await response.text()
    assert response.status == status, text
    return await response.json()


def stored(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(gateway_configs)).scalar_one())


async def test_a_landlord_configures_their_own_gateway_and_sees_it(
        setup: tuple[Client, World], engine: sa.Engine) -> None:
    client, w = setup
    path = "/api/v1/gateways/gw-a1/config"
    empty = await call(client, "GET", path, w.landlord_a.token)
    assert empty["version"] is None and empty["settings"] == {} and empty["gate_s"] == 30.0
    made = await call(client, "PUT", path, w.landlord_a.token, {"settings": GOOD, "comment": "longer heartbeat"},
                      status=201)
    assert made["version"] == 1 and made["settings"] == GOOD and made["published"] is False  # no MQTT here
    assert made["created_by"] == w.landlord_a.username and made["gate_s"] == 30.0
    again = await call(client, "PUT", path, w.admin.token, {"settings": {"heartbeat_s": 5}, "gate_s": 60},
                       status=201)
    assert again["version"] == 2 and again["gate_s"] == 60
    report_status(engine, "gw-a1", running=1, attempted=2, state="applying")
    now = await call(client, "GET", path, w.landlord_a.token)
    assert now["running"] == {"version": 1, "attempted": 2, "state": "applying", "error": None}
    history = await call(client, "GET", path + "/history?limit=1", w.landlord_a.token)
    assert [v["version"] for v in history["versions"]] == [2] and history["next_before"] == 2
    assert history["versions"][0]["created_by"] == w.admin.username


async def test_another_landlords_gateway_answers_like_a_missing_one(
        setup: tuple[Client, World], engine: sa.Engine) -> None:
    client, w = setup
    for method, suffix, body in (("GET", "", None), ("PUT", "", {"settings": GOOD}), ("GET", "/history", None)):
        theirs = await client.request(method, f"/api/v1/gateways/gw-b1/config{suffix}", json=body,
                                      headers=bearer(w.landlord_a.token))
        missing = await client.request(method, f"/api/v1/gateways/gw-nowhere/config{suffix}", json=body,
                                       headers=bearer(w.landlord_a.token))
        assert theirs.status == missing.status == 404
        assert await theirs.json() == await missing.json()
    coordinator = make_user(engine, "coordinator")
    assert (await client.get("/api/v1/gateways/gw-a1/config", headers=bearer(coordinator.token))).status == 403
    assert (await client.get("/api/v1/gateways/gw-a1/config")).status == 401
    # An administrator's missing gateway is a 404 too.
    assert (await client.get("/api/v1/gateways/gw-nowhere/config", headers=bearer(w.admin.token))).status == 404
    assert stored(engine) == 0


async def test_bad_changes_are_a_clear_4xx_and_store_nothing(
        setup: tuple[Client, World], engine: sa.Engine) -> None:
    client, w = setup
    path, token = "/api/v1/gateways/gw-a1/config", w.landlord_a.token
    refused = await call(client, "PUT", path, token, {"settings": {"mqtt_url": "mqtt://x", "devices": 5}},
                         status=400)
    assert refused["field"] == "settings" and {p["path"] for p in refused["problems"]} == {"mqtt_url"}
    assert "mqtt_url: may not be set by a remote configuration" in refused["detail"]
    refused = await call(client, "PUT", path, token, {"settings": {"heartbeat_s": -1, "devices": [{"type": "x"}]}},
                         status=400)
    assert {p["path"] for p in refused["problems"]} >= {"heartbeat_s", "devices.0.type"}
    for body, field in (({"settings": "heartbeat_s = 5"}, "settings"), ({}, "settings"),
                        ({"settings": {}, "gate_s": 1}, "gate_s"), ({"settings": {}, "comment": "x" * 201}, "comment"),
                        ({"settings": {}, "extra": 1}, "extra")):
        answer = await call(client, "PUT", path, token, body, status=400)
        assert answer["field"] == field, answer
    big = {"settings": {"devices": [{"type": "em4100", "id": f"r{i}", "port": "/dev/x"} for i in range(6000)]}}
    response = await client.put(path, json=big, headers=bearer(token))
    assert response.status == 413 and (await response.json())["error"] == "too_large"
    add_gateway(engine, "gw-gone", w.building_a, revoked=True)
    gone = await call(client, "PUT", "/api/v1/gateways/gw-gone/config", token, {"settings": GOOD}, status=409)
    assert "revoked" in gone["detail"]
    assert stored(engine) == 0


async def test_the_version_a_put_makes_is_signed_for_the_gateway(
        setup: tuple[Client, World], engine: sa.Engine) -> None:
    client, w = setup
    await call(client, "PUT", "/api/v1/gateways/gw-a2/config", w.admin.token, {"settings": GOOD}, status=201)
    keys = (await call(client, "GET", "/api/v1/allowlist-keys", w.admin.token))["keys"]
    with engine.connect() as conn:
        message = conn.execute(sa.select(gateway_configs.c.payload)).scalar_one()
    signed = wire.decode_signed_config(message)
    public = {k: signing.load_public_key(v) for k, v in keys.items()}
    assert signing.verify(signed.payload.encode(), signed.signature, public, signed.key_id)
    assert wire.decode_remote_config(signed.payload).gw == "gw-a2"


async def test_only_an_administrator_moves_the_broker_or_the_outbox(
        setup: tuple[Client, World], engine: sa.Engine) -> None:
    client, w = setup
    path = "/api/v1/gateways/gw-a1/config"
    for settings in ({"broker_url": "mqtts://broker.landlord.example:8883"}, {"outbox": {"max_events": 10}}):
        refused = await call(client, "PUT", path, w.landlord_a.token, {"settings": settings}, status=400)
        assert refused["problems"] == [{"path": next(iter(settings)),
                                        "message": "only an administrator may change this"}]
    assert stored(engine) == 0
    moved = {"broker_url": "mqtts://broker2.example:8883", "heartbeat_s": 20}
    await call(client, "PUT", path, w.admin.token, {"settings": moved}, status=201)
    # The landlord's next change keeps the administrator's broker, named or not.
    kept = await call(client, "PUT", path, w.landlord_a.token, {"settings": {"heartbeat_s": 5}}, status=201)
    assert kept["settings"] == {"heartbeat_s": 5, "broker_url": "mqtts://broker2.example:8883"}
    same = await call(client, "PUT", path, w.landlord_a.token,
                      {"settings": {"heartbeat_s": 6, "broker_url": "mqtts://broker2.example:8883"}}, status=201)
    assert same["settings"]["broker_url"] == "mqtts://broker2.example:8883"
