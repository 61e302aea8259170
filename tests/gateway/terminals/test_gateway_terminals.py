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


async def test_reads_the_terminal_kept_in_an_outage_reach_the_server_once(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer, terminal: FakeTerminal) -> None:
    snapshot = AllowlistSnapshot(gw=GW, version=1, issued_at=T0, entries=[AllowlistEntry(credential=CARD,
                                                                                         person="p-1")])
    _publish(mosquitto, signed(snapshot), wire.allowlist_topic(GW))
    config = _config(tmp_path, mosquitto, terminal)
    config = config.model_copy(update={"terminals": [config.terminals[0].model_copy(
        update={"catch_up_events": True})]})
    terminal.add_event(card="1")  # from before the gateway knew the terminal
    async with running(config) as app:
        await wait_until(lambda: _terminal_status(server, 1), timeout=15, what="synced")
        pushed = terminal.add_event(card=str(0x14008EC793))
        assert app.terminal_event_seen("k1t-main", pushed)  # the push listener delivered it
        await terminal.offline()
        await wait_until(lambda: app.terminals[0].health.reachable is False, timeout=10, what="unreachable")
        granted = terminal.add_event(card=str(0x14008EC793), minor=0x01)
        denied = terminal.add_event(card="42", minor=0x09)
        await terminal.online()

        def reads() -> list[wire.CardRead]:
            return [e for e in server.received if isinstance(e, wire.CardRead)]

        await wait_until(lambda: len(reads()) >= 2, timeout=10, what="the missed reads at the server")
        assert not app.terminal_event_seen("k1t-main", granted), "the catch-up noted what it delivered"
    assert [(r.device, r.door, r.credential.value, r.decision) for r in reads()] == [
        ("k1t-main", "front", "14008EC793", "granted"), ("k1t-main", "front", "2A", "denied")]
    assert denied == granted + 1
