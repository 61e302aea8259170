"""A gateway with a Hikvision terminal to keep: the allowlist arrives signed
over MQTT, the terminal's own users follow it, a revocation reaches it, and
the gateway's status tells the server which version the terminal holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
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


async def test_a_zkteco_batch_posted_again_after_a_gateway_restart_is_stored_once_at_the_terminals_time(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer) -> None:
    import aiohttp

    from tests.gateway.test_zkteco_adapter import ZkTerminal
    from tests.services import free_port

    port = free_port()
    config = GatewayConfig.model_validate({
        "gateway_id": GW, "mqtt_url": mosquitto.url, "data_dir": str(tmp_path / "data"), "heartbeat_s": 0.5,
        "devices": [{"type": "zkteco_adms", "id": "zk-lobby", "door": "front", "host": "127.0.0.1", "port": port}],
    })
    # Ten minutes ago on the terminal's clock (UTC+8), a few seconds apart.
    then = datetime.now(UTC).astimezone(timezone(timedelta(hours=8))).replace(microsecond=0) - timedelta(minutes=10)
    lines = [f"100{i}\t{(then + timedelta(seconds=i)).strftime('%Y-%m-%d %H:%M:%S')}\t0\t15\t0\t0\t0\n"
             for i in range(3)]

    def reads() -> list[wire.CardRead]:
        return [e for e in server.received if isinstance(e, wire.CardRead)]

    async with aiohttp.ClientSession() as session:
        terminal = ZkTerminal(session, f"http://127.0.0.1:{port}", sn="CKJS201260012")
        async with running(config) as first:
            await wait_until(lambda: _answers(port), timeout=5, what="listening")
            assert (await terminal.upload("ATTLOG", "".join(lines[:2]).encode(), "1"))[0] == 200
            await wait_until(lambda: len(reads()) == 2, timeout=10, what="two reads at the server")
            sent = first.outbox
            assert sent is not None
            # Acknowledged, or the restart would send them again under their seqs (the server's to drop).
            await wait_until(lambda: sent.depth() == 0, timeout=10, what="both acknowledged")
        # The terminal never got our OK (the gateway stopped) and has no stamp
        # file to go by: it posts the batch again, with a new record.
        async with running(config) as app:
            await wait_until(lambda: _answers(port), timeout=5, what="listening")
            assert (await terminal.upload("ATTLOG", "".join(lines).encode(), "2"))[0] == 200
            await wait_until(lambda: len(reads()) >= 3, timeout=10, what="the new read at the server")
            outbox = app.outbox
            assert outbox is not None
            await wait_until(lambda: outbox.depth() == 0, timeout=10, what="everything acknowledged")
            assert outbox.outbox.repeats == 2
    assert sorted(r.credential.value for r in reads()) == ["1000", "1001", "1002"], "each record once"
    for read in reads():
        i = int(read.credential.value) - 1000
        assert read.ts == then + timedelta(seconds=i), "the terminal's time, its clock being right"
        assert read.decision == "granted"  # a record exists only when the terminal verified someone


def _answers(port: int) -> bool:
    from tests.services import port_open

    return port_open("127.0.0.1", port)
