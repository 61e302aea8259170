"""Enrolment against a real Mosquitto with its dynamic security plugin (the
``fleet_broker`` fixture): the gateway connects over TLS with exactly what
the answer gave it, its status reaches the server through the real ingest
and the code's state turns to online; with the broker down, an enrolment
answers 503, keeps nothing, and the same code works once it is back."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rentgate import wire
from server.app import make_app
from server.db.models import gateway_enrolments, gateways
from server.fleet import broker
from server.fleet.appkeys import BROKER
from server.fleet.broker import gateway_client_id
from tests.server.fleet.enrol_helpers import csr_pem, enrol_settings, metrics, new_code, seed_landlords
from tests.server.registry.api_helpers import Api, MakeClient
from tests.services import Mosquitto, MqttProbe


def _settings(broker: Mosquitto, database_url: str, tmp_path: Path) -> Any:
    assert broker.dynsec is not None
    return enrol_settings(database_url, tmp_path, mqtt_url=broker.server_url, broker_admin_url=broker.admin_url,
                          gateway_mqtt_url=broker.gateway_url, gateway_ca_dir=str(broker.dynsec.ca_dir),
                          enrol_attempts_per_address=100)


def _tls(answer: wire.EnrolResponse, key_pem: bytes, folder: Path) -> ssl.SSLContext:
    """The TLS a gateway sets up from its enrolment answer and its own key."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.pem").write_text(answer.ca_pem)
    (folder / "cert.pem").write_text(answer.certificate_pem)
    (folder / "key.pem").write_bytes(key_pem)
    ctx = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    ctx.load_cert_chain(str(folder / "cert.pem"), str(folder / "key.pem"))
    return ctx


async def _enrol(api: Api, code: str) -> tuple[int, Any, bytes]:
    from cryptography.hazmat.primitives import serialization

    csr, key = csr_pem()
    response = await api.client.post("/api/v1/enrol", json={"code": code, "csr": csr, "hostname": "box"})
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return response.status, await response.json(), key_pem


async def test_an_enrolled_gateway_connects_with_what_it_was_given_and_shows_online(
        fleet_broker: Mosquitto, sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path,
        aiohttp_client: MakeClient) -> None:
    api = Api(await aiohttp_client(make_app(_settings(fleet_broker, sqlite_url, tmp_path), ingest=True)))
    people = seed_landlords(sqlite_engine)
    made = await new_code(api, people.a.token, people.building_a)
    started = time.monotonic()
    status, body, key_pem = await _enrol(api, made["code"])
    assert status == 200, body
    answer = wire.decode_enrol_response(json.dumps(body))
    assert answer.mqtt_url == fleet_broker.gateway_url
    probe = MqttProbe(fleet_broker.host, fleet_broker.tls_port, client_id=gateway_client_id(answer.gw),
                      username=answer.mqtt_username, password=answer.mqtt_password,
                      tls=_tls(answer, key_pem, tmp_path / "gateway"))
    assert await asyncio.to_thread(probe.try_connect) == "Success"
    online = wire.GatewayStatus(gw=answer.gw, state="online", devices_online=1, devices_total=1)
    await asyncio.to_thread(probe.publish, wire.status_topic(answer.gw), online.model_dump_json().encode(),
                            retain=True)
    state: dict[str, Any] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = await api.call("GET", f"/api/v1/enrolments/{made['enrolment']}", token=people.a.token)
        if state["state"] == "online":
            break
        await asyncio.sleep(0.1)
    assert state["state"] == "online", state
    assert state["gateway"]["id"] == answer.gw
    # Code entered to online at the server, through the real broker and ingest.
    assert time.monotonic() - started < 10
    probe.client.disconnect()
    probe.client.loop_stop()


async def test_with_the_broker_down_nothing_is_kept_and_the_same_code_works_later(
        fleet_broker: Mosquitto, sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path,
        aiohttp_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The broker is stopped on purpose: do not wait the production timeout for it.
    monkeypatch.setattr(broker, "COMMAND_TIMEOUT_S", 1.5)
    api = Api(await aiohttp_client(make_app(_settings(fleet_broker, sqlite_url, tmp_path), ingest=False)))
    people = seed_landlords(sqlite_engine)
    made = await new_code(api, people.a.token, people.building_a)
    await asyncio.to_thread(fleet_broker.stop)
    status, body, _ = await _enrol(api, made["code"])
    assert status == 503, body
    assert body["error"] == "broker_unavailable" and "try again" in body["detail"]
    assert (await metrics(api))["broker_unavailable"] == 1
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(gateways)).scalar_one() == 0
        row = conn.execute(sa.select(gateway_enrolments.c.used_at, gateway_enrolments.c.gateway_id)).one()
    assert tuple(row) == (None, None)
    state = await api.call("GET", f"/api/v1/enrolments/{made['enrolment']}", token=people.a.token)
    assert state["state"] == "waiting"
    await asyncio.to_thread(fleet_broker.start)
    # The gateway's installer tries again "in a minute": by then the admin
    # link is back. Its reconnect (jittered, up to RECONNECT_MAX_S) can
    # outlast this test's short command timeout, so wait for the link itself.
    provisioner = api.client.app[BROKER]
    assert isinstance(provisioner, broker.DynsecProvisioner)
    assert await asyncio.to_thread(provisioner.link.wait_subscribed, 30)
    status, body, _ = await _enrol(api, made["code"])
    assert status == 200, body
    assert (await metrics(api))["ok"] == 1
