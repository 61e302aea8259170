"""Staged rollouts: a first wave chosen by a stable hash, continue only
once every gateway of it has applied, halt by hand, halt by itself on a
rollback or a refusal; bad input refused with nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.app import make_app
from server.db.models import config_rollouts, gateway_configs, gateways
from server.fleet import rollouts
from server.fleet.config_service import record_once
from tests.server.auth_helpers import bearer
from tests.server.fleet.config_helpers import World, add_gateway, config_settings, report_status, seed
from tests.server.registry.api_helpers import Client, MakeClient

FLEET = [f"gw-r{i:02d}" for i in range(20)]
PATH = "/api/v1/fleet/rollouts"


@pytest.fixture
async def setup(engine: sa.Engine, database_url: str, tmp_path: Path,
                aiohttp_client: MakeClient) -> tuple[Client, World]:
    client = await aiohttp_client(make_app(config_settings(database_url, tmp_path), ingest=False))
    world = seed(engine)
    for gw in FLEET:
        add_gateway(engine, gw, world.building_b)
    return client, world


async def call(client: Client, method: str, path: str, token: str, body: Any = None, status: int = 200) -> Any:
    response = await client.request(method, path, json=body, headers=bearer(token))
    assert response.status == status, await response.text()
    return await response.json()


def sent(engine: sa.Engine, rollout_id: int) -> dict[str, int]:
    c = gateway_configs.c
    with engine.connect() as conn:
        return {r[0]: r[1] for r in conn.execute(sa.select(c.gateway_id, c.version).where(c.rollout_id == rollout_id))}


def apply_all(engine: sa.Engine, versions: dict[str, int]) -> None:
    for gw, version in versions.items():
        report_status(engine, gw, running=version, attempted=version, state="applied")
    record_once(engine)


def test_the_first_wave_is_a_stable_hashed_share() -> None:
    order = rollouts.wave_order(7, FLEET)
    assert order == rollouts.wave_order(7, list(reversed(FLEET))) and sorted(order) == FLEET
    assert order != rollouts.wave_order(8, FLEET)
    assert rollouts.first_wave_size(0.1, 20) == 2 and rollouts.first_wave_size(0.01, 20) == 1
    assert rollouts.first_wave_size(0.15, 20) == 3 and rollouts.first_wave_size(1.0, 20) == 20


async def test_a_rollout_goes_in_two_waves(setup: tuple[Client, World], engine: sa.Engine) -> None:
    client, w = setup
    # One gateway already has settings of its own: the change replaces only its key.
    await call(client, "PUT", "/api/v1/gateways/gw-r03/config", w.admin.token,
               {"settings": {"outbox": {"max_events": 500}}}, status=201)
    made = await call(client, "POST", PATH, w.admin.token, {"changes": {"heartbeat_s": 12}, "gateways": FLEET,
                                                           "share": 0.1, "comment": "heartbeat", "gate_s": 20},
                      status=201)
    assert made["state"] == "staged" and made["gateways"] == 20 and made["sent"] == 2
    assert made["counts"]["pending"] == 2 and made["counts"]["waiting"] == 18
    assert made["created_by"] == w.admin.username
    first = sent(engine, made["id"])
    assert sorted(first) == sorted(rollouts.wave_order(made["id"], FLEET)[:2])
    # Not yet: the first wave has not applied.
    refused = await call(client, "POST", f"{PATH}/{made['id']}/continue", w.admin.token, status=409)
    assert "2 of 2 gateways pending" in refused["detail"]
    apply_all(engine, first)
    progress = await call(client, "GET", f"{PATH}/{made['id']}", w.admin.token)
    assert progress["counts"]["applied"] == 2 and progress["failed"] == []
    done = await call(client, "POST", f"{PATH}/{made['id']}/continue", w.admin.token)
    assert done["state"] == "completed" and done["sent"] == 20 and done["counts"]["waiting"] == 0
    c = gateway_configs.c
    with engine.connect() as conn:
        rows = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
            sa.select(c.gateway_id, c.settings, c.gate_s, c.comment).where(c.rollout_id == made["id"]))}
    assert rows["gw-r03"][0] == {"outbox": {"max_events": 500}, "heartbeat_s": 12}
    assert rows["gw-r00"][0] == {"heartbeat_s": 12} and {r[1] for r in rows.values()} == {20.0}
    await call(client, "POST", f"{PATH}/{made['id']}/continue", w.admin.token, status=409)
    await call(client, "POST", f"{PATH}/{made['id']}/halt", w.admin.token, status=409)
    listed = await call(client, "GET", PATH, w.admin.token)
    assert [r["id"] for r in listed["rollouts"]] == [made["id"]]


async def test_a_rollback_in_the_first_wave_halts_the_rollout(setup: tuple[Client, World], engine: sa.Engine) -> None:
    client, w = setup
    made = await call(client, "POST", PATH, w.admin.token, {"changes": {"heartbeat_s": 3}, "gateways": FLEET,
                                                           "share": 0.2}, status=201)
    first = sent(engine, made["id"])
    assert len(first) == 4
    one, *others = sorted(first)
    apply_all(engine, {gw: first[gw] for gw in others})
    report_status(engine, one, running=None, attempted=first[one], state="rolled_back",
                  error="reader em-1 silent for 30 s")
    record_once(engine)
    progress = await call(client, "GET", f"{PATH}/{made['id']}", w.admin.token)
    assert progress["state"] == "halted" and progress["counts"]["rolled_back"] == 1
    assert progress["failed"] == [{"gateway": one, "version": first[one], "outcome": "rolled_back",
                                   "reason": "reader em-1 silent for 30 s"}]
    refused = await call(client, "POST", f"{PATH}/{made['id']}/continue", w.admin.token, status=409)
    assert "halted" in refused["detail"]
    assert len(sent(engine, made["id"])) == 4  # nothing more went out


async def test_an_administrator_halts_a_rollout(setup: tuple[Client, World], engine: sa.Engine) -> None:
    client, w = setup
    made = await call(client, "POST", PATH, w.admin.token, {"changes": {"heartbeat_s": 3},
                                                           "building_ids": [w.building_b], "share": 0.5}, status=201)
    assert made["gateways"] == 21 and made["sent"] == 11  # gw-b1 and the twenty
    halted = await call(client, "POST", f"{PATH}/{made['id']}/halt", w.admin.token)
    assert halted["state"] == "halted"
    assert (await call(client, "POST", f"{PATH}/{made['id']}/halt", w.admin.token))["state"] == "halted"
    apply_all(engine, sent(engine, made["id"]))
    await call(client, "POST", f"{PATH}/{made['id']}/continue", w.admin.token, status=409)


async def test_a_gateway_revoked_during_a_rollout_neither_blocks_nor_gets_the_rest(
        setup: tuple[Client, World], engine: sa.Engine) -> None:
    client, w = setup
    made = await call(client, "POST", PATH, w.admin.token, {"changes": {"heartbeat_s": 4}, "gateways": FLEET[:10],
                                                           "share": 0.2}, status=201)
    first = sent(engine, made["id"])
    stuck, fine = sorted(first)
    apply_all(engine, {fine: first[fine]})
    later = next(gw for gw in FLEET[:10] if gw not in first)
    with engine.begin() as conn:
        conn.execute(sa.update(gateways).where(gateways.c.id.in_([stuck, later]))
                     .values(revoked_at=datetime.now(UTC)))
    done = await call(client, "POST", f"{PATH}/{made['id']}/continue", w.admin.token)
    assert done["state"] == "completed" and later not in sent(engine, made["id"]) and done["sent"] == 9


async def test_bad_rollouts_are_refused_and_store_nothing(setup: tuple[Client, World], engine: sa.Engine) -> None:
    client, w = setup
    token = w.admin.token
    for body, field in (
            ({"changes": {"mqtt_url": "mqtt://x"}, "gateways": FLEET, "share": 0.1}, "changes"),
            ({"changes": {}, "gateways": FLEET, "share": 0.1}, "changes"),
            ({"changes": {"heartbeat_s": -5}, "gateways": FLEET, "share": 0.1}, "changes"),
            ({"changes": {"heartbeat_s": 5}, "gateways": FLEET, "share": 0}, "share"),
            ({"changes": {"heartbeat_s": 5}, "gateways": FLEET, "share": 1.5}, "share"),
            ({"changes": {"heartbeat_s": 5}, "share": 0.5}, "gateways"),
            ({"changes": {"heartbeat_s": 5}, "gateways": FLEET, "building_ids": [w.building_a], "share": 0.5},
             "gateways"),
            ({"changes": {"heartbeat_s": 5}, "gateways": ["gw-nowhere"], "share": 0.5}, "gateways"),
            ({"changes": {"heartbeat_s": 5}, "gateways": ["bad id!"], "share": 0.5}, "gateways.0"),
            ({"changes": {"heartbeat_s": 5}, "gateways": ["gw-x"] * 10_001, "share": 0.5}, "gateways"),
            ({"changes": {"heartbeat_s": 5}, "building_ids": [2**63], "share": 0.5}, "building_ids.0"),
            ({"changes": {"heartbeat_s": 5}, "building_ids": [999_999], "share": 0.5}, "building_ids")):
        answer = await call(client, "POST", PATH, token, body, status=400)
        assert answer["field"] == field, (body, answer)
    problems = await call(client, "POST", PATH, token, {"changes": {"heartbeat_s": -5}, "gateways": FLEET[:2],
                                                        "share": 0.5}, status=400)
    assert "gw-r00: heartbeat_s" in problems["detail"]
    add_gateway(engine, "gw-revoked", w.building_b, revoked=True)
    await call(client, "POST", PATH, token, {"changes": {"heartbeat_s": 5}, "gateways": ["gw-revoked"],
                                             "share": 1}, status=400)
    for method, suffix in (("GET", ""), ("POST", "/continue"), ("POST", "/halt")):
        await call(client, method, f"{PATH}/99{suffix}", token, status=404)
        await call(client, method, f"{PATH}/{'9' * 25}{suffix}", token, status=404)
        await call(client, method, f"{PATH}/1{suffix}", w.landlord_a.token, status=403)
    await call(client, "POST", PATH, w.landlord_b.token, {"changes": {"heartbeat_s": 5}, "gateways": FLEET,
                                                         "share": 0.5}, status=403)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(config_rollouts)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(gateway_configs)).scalar() == 0


async def test_a_second_wave_gateway_that_rolls_back_shows_in_progress(
        setup: tuple[Client, World], engine: sa.Engine) -> None:
    client, w = setup
    made = await call(client, "POST", PATH, w.admin.token, {"changes": {"heartbeat_s": 7}, "gateways": FLEET[:4],
                                                           "share": 1}, status=201)
    assert made["state"] == "completed" and made["sent"] == 4
    versions = sent(engine, made["id"])
    report_status(engine, "gw-r01", running=None, attempted=versions["gw-r01"], state="refused",
                  error="signature by an unknown key")
    with engine.begin() as conn:
        conn.execute(sa.update(config_rollouts).values(updated_at=datetime.now(UTC)))
    record_once(engine)
    progress = await call(client, "GET", f"{PATH}/{made['id']}", w.admin.token)
    assert progress["state"] == "completed" and progress["counts"]["refused"] == 1
    assert progress["failed"][0]["reason"] == "signature by an unknown key"
