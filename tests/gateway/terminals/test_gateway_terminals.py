"""A gateway with a Hikvision terminal to keep: the allowlist arrives signed
over MQTT, the terminal's own users follow it, a revocation reaches it, and
the gateway's status tells the server which version the terminal holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import GatewayConfig
from gateway.terminals.mapping import employee_no
from rentgate import signing, wire
from rentgate.wire import AllowlistDelta, AllowlistEntry, AllowlistSnapshot, Credential
from tests.gateway.access.helpers import SERVER_KEY, T0, signed
from tests.gateway.fake_server import FakeServer
from tests.gateway.helpers import GW, wait_until
from tests.gateway.terminals.fake_isapi import FakeTerminal
from tests.gateway.test_app import running
from tests.services import Mosquitto, MqttProbe

CARD = Credential(format="raw", value="14008EC793")
FACE = Credential(format="terminal_person", value="p77")


@pytest.fixture
async def terminal() -> AsyncIterator[FakeTerminal]:
    fake = FakeTerminal()
    await fake.start()
    yield fake
    await fake.close()


def _config(tmp_path: Path, mosquitto: Mosquitto, terminal: FakeTerminal) -> GatewayConfig:
    (tmp_path / "k1t.pw").write_text(terminal.password)
    return GatewayConfig.model_validate({
        "gateway_id": GW, "mqtt_url": mosquitto.url, "data_dir": str(tmp_path / "data"), "heartbeat_s": 0.5,
        "access": {"public_keys": {"k1": signing.public_key_b64(SERVER_KEY.public_key())}},
        "terminals": [{"id": "k1t-main", "url": terminal.url, "password_file": str(tmp_path / "k1t.pw"),
                       "doors": ["front"], "probe_interval_s": 0.5, "retry_max_s": 0.5}],
    })


def _publish(mosquitto: Mosquitto, message: bytes, topic: str) -> None:
    probe = MqttProbe(mosquitto.host, mosquitto.port).connect()
    try:
        probe.publish(topic, message, retain=topic == wire.allowlist_topic(GW))
    finally:
        probe.close()


def _terminal_status(server: FakeServer, version: int) -> bool:
    return any(t.id == "k1t-main" and t.version_held == version and t.reachable
               for s in server.statuses for t in s.terminals or [])


async def test_the_terminals_own_list_follows_the_allowlist(tmp_path: Path, mosquitto: Mosquitto,
                                                           server: FakeServer, terminal: FakeTerminal) -> None:
    snapshot = AllowlistSnapshot(gw=GW, version=1, issued_at=T0, entries=[
        AllowlistEntry(credential=CARD, person="p-1"),
        AllowlistEntry(credential=FACE, person="p-77"),
        AllowlistEntry(credential=Credential(format="raw", value="AB"), person="p-2", doors=["back"]),
    ])
    _publish(mosquitto, signed(snapshot), wire.allowlist_topic(GW))
    async with running(_config(tmp_path, mosquitto, terminal)):
        await wait_until(lambda: _terminal_status(server, 1), timeout=15, what="version 1 held in the status")
        assert set(terminal.users) == {employee_no("p-1"), "p77"}, "p-2 is for another door"
        assert set(terminal.cards) == {str(0x14008EC793)}
        removal = AllowlistDelta(gw=GW, base_version=1, version=2, issued_at=T0, removals=[FACE])
        _publish(mosquitto, signed(removal), wire.allowlist_delta_topic(GW))
        await wait_until(lambda: "p77" in terminal.deleted, timeout=5, what="the face's user deleted")
        await wait_until(lambda: _terminal_status(server, 2), timeout=10, what="version 2 held in the status")
    assert set(terminal.users) == {employee_no("p-1")}
    health = next(d for s in server.statuses for d in s.devices or [] if d.id == "k1t-main")
    assert health.type == "hikvision_isapi"


async def test_a_zkteco_terminals_own_list_follows_the_allowlist_through_the_gateway(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer) -> None:
    from firmware_sim.zkteco_terminal import ZktecoTerminalSim
    from tests.services import free_port

    sn, port = "CKJS201260012", free_port()
    config = GatewayConfig.model_validate({
        "gateway_id": GW, "mqtt_url": mosquitto.url, "data_dir": str(tmp_path / "data"), "heartbeat_s": 0.5,
        "access": {"public_keys": {"k1": signing.public_key_b64(SERVER_KEY.public_key())}},
        "devices": [{"type": "zkteco_adms", "id": "zk-listener", "host": "127.0.0.1", "port": port,
                     "poll_delay_s": 1, "error_delay_s": 1, "sync_users": True,
                     "terminals": {sn: {"device": "zk-lobby", "door": "front"}}}],
    })
    tenant, leaver = Credential(format="em4100", value="00C2A1B0F2"), Credential(format="em4100", value="00C2A1B0F3")
    _publish(mosquitto, signed(AllowlistSnapshot(gw=GW, version=1, issued_at=T0, entries=[
        AllowlistEntry(credential=tenant, person="p-1"), AllowlistEntry(credential=leaver, person="p-2")])),
        wire.allowlist_topic(GW))

    def held(version: int) -> bool:
        return any(t.id == "zk-lobby" and t.version_held == version and t.reachable
                   for s in server.statuses for t in s.terminals or [])

    async with running(config), ZktecoTerminalSim(f"http://127.0.0.1:{port}", serial=sn, poll_s=0.05,
                                                  error_delay_s=0.05) as terminal:
        await wait_until(lambda: held(1), timeout=15, what="version 1 held in the status")
        assert (await terminal.present_card(str(int(leaver.value, 16)))).granted
        _publish(mosquitto, signed(AllowlistDelta(gw=GW, base_version=1, version=2, issued_at=T0,
                                                  removals=[leaver])), wire.allowlist_delta_topic(GW))
        await wait_until(lambda: held(2), timeout=10, what="version 2 held in the status")
        assert not (await terminal.present_card(str(int(leaver.value, 16)))).granted, "refused by the terminal"
        assert (await terminal.present_card(str(int(tenant.value, 16)))).granted
