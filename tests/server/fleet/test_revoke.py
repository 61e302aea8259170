"""Revoking a gateway: who may (the policy), what the database and the audit
log keep, that its allowlist stops; and against a real fleet broker, that the
running gateway is cut off at once, cannot come back, and that the broker no
longer holds its allowlist."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from rentgate import wire
from server.app import make_app
from server.db.models import allowlist_versions, audit_log, gateways
from server.fleet.appkeys import BROKER
from server.fleet.broker import NoBroker
from server.fleet.revoke import AUDIT_ACTION
from server.ingest.appkeys import INGEST
from tests.server.auth_helpers import make_user
from tests.server.fleet.conftest import GatewayIdentity
from tests.server.registry.api_helpers import ID_A, ID_B, Api, City, MakeClient, person, seed_city, settings_for
from tests.services import Mosquitto, MqttProbe

REVOKE = "/api/v1/gateways/{}/revoke"


def version_of(engine: sa.Engine, gw: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(allowlist_versions.c.version)
                            .where(allowlist_versions.c.gateway_id == gw)).scalar()


async def register_card(api: Api, city: City, value: str, number: str = ID_A) -> None:
    await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": city.unit, "person": person(number), "arrived_at": "2026-01-02T10:00:00+00:00",
        "credential": {"format": "em4100", "value": value}}, 201, token=city.admin.token)


async def test_who_may_revoke_and_what_is_kept(engine: sa.Engine, database_url: str, tmp_path: Path,
                                               aiohttp_client: MakeClient) -> None:
    api = Api(await aiohttp_client(make_app(settings_for(database_url, tmp_path), ingest=False)))
    city = await seed_city(api, engine)
    assert isinstance(api.client.app[BROKER], NoBroker)
    await register_card(api, city, "14008ec793")

    # Another building's landlord learns nothing: the same answer as for a
    # gateway that does not exist.
    theirs = await api.call("POST", REVOKE.format("gw-a"), status=404, token=city.other_landlord.token)
    missing = await api.call("POST", REVOKE.format("gw-nope"), status=404, token=city.other_landlord.token)
    assert theirs == missing
    assert await api.call("POST", REVOKE.format("gw-nope"), status=404, token=city.admin.token) == missing
    for user in (city.coordinator, city.police):
        await api.call("POST", REVOKE.format("gw-a"), status=403, token=user.token)
    await api.call("POST", REVOKE.format("gw%2F%2B"), status=404, token=city.landlord.token)

    before = version_of(engine, "gw-a")
    done = await api.call("POST", REVOKE.format("gw-a"), token=city.landlord.token)
    assert done["gateway"] == "gw-a"
    again = await api.call("POST", REVOKE.format("gw-a"), token=city.admin.token)
    assert again == done  # the first revocation stays the one on record

    with engine.connect() as conn:
        row = conn.execute(sa.select(gateways.c.revoked_at, gateways.c.revoked_by, gateways.c.online)
                           .where(gateways.c.id == "gw-a")).one()
        audited = conn.execute(sa.select(audit_log.c.actor, audit_log.c.subject)
                               .where(audit_log.c.action == AUDIT_ACTION)).all()
    assert row.revoked_by == city.landlord.id and row.online is False
    assert datetime.fromisoformat(done["revoked_at"]) == row.revoked_at
    assert [tuple(a) for a in audited] == [(f"user:{city.landlord.id}", "gateway:gw-a")]

    # Its allowlist stops: a new card in its building gives it no new
    # version, and it has no entries to hand out.
    await register_card(api, city, "14008ec794", ID_B)
    assert version_of(engine, "gw-a") == before
    shown = await api.call("GET", "/api/v1/gateways/gw-a/allowlist", token=city.admin.token)
    assert shown["entries"] == []


async def test_a_revoked_gateway_is_cut_off_the_broker_at_once(
        fleet_broker: Mosquitto, sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path,
        aiohttp_client: MakeClient, identity: Callable[[str], GatewayIdentity]) -> None:
    assert fleet_broker.dynsec is not None
    settings = settings_for(sqlite_url, tmp_path).model_copy(update={
        "mqtt_url": fleet_broker.server_url, "broker_admin_url": fleet_broker.admin_url,
        "mqtt_client_id": f"server-{uuid.uuid4().hex[:8]}"})
    api = Api(await aiohttp_client(make_app(settings)))
    city = await seed_city(api, sqlite_engine)
    await register_card(api, city, "14008ec793")

    gw = identity("gw-a")
    await api.client.app[BROKER].add_gateway("gw-a", gw.password)
    door = gw.probe(fleet_broker)
    assert door.try_connect() == "Success"
    # The server, with its own login, reached the gateway's topic.
    assert door.subscribe_result(wire.allowlist_topic("gw-a")) == 1
    topic, message, retained = door.expect(10)
    assert topic == wire.allowlist_topic("gw-a") and retained and message

    started = time.monotonic()
    await api.call("POST", REVOKE.format("gw-a"), token=city.landlord.token)
    answered = time.monotonic() - started
    assert "gw-a" in api.client.app[INGEST].store.revoked  # its messages refused from now on
    assert await asyncio.to_thread(door.disconnected.wait, 2.0), "the revoked gateway is still connected"
    assert door.disconnected_at is not None
    cutoff = door.disconnected_at - started
    print(f"revoke route: cut off after {cutoff * 1000:.1f} ms, answered after {answered * 1000:.1f} ms")
    assert cutoff < 2.0
    door.client.loop_stop()
    assert gw.probe(fleet_broker).try_connect() == "Not authorized"

    # The broker holds no allowlist or configuration for it any more.
    admin = MqttProbe(fleet_broker.host, fleet_broker.port, username=fleet_broker.dynsec.admin_username,
                      password=fleet_broker.dynsec.admin_password)
    assert admin.try_connect() == "Success"
    admin.subscribe(f"{wire.TOPIC_ROOT}/gw/gw-a/+")
    try:
        stale = admin.expect(0.5)
    except AssertionError:
        stale = None
    assert stale is None or stale[1] == b"", stale
    admin.close()

    # A landlord without the building cannot revoke gw-b (not even learn of it).
    stranger = make_user(sqlite_engine, "landlord")
    await api.call("POST", REVOKE.format("gw-a"), status=404, token=stranger.token)
