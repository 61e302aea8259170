"""The gateway end to end against a real Mosquitto and a fake server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from devices.em4100 import encode_frame
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from rentgate import wire
from tests.gateway.fake_server import FakeServer
from tests.gateway.helpers import GW, card, wait_until
from tests.services import Mosquitto


def _config(tmp_path: Path, url: str, **outbox: Any) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "gateway_id": GW, "mqtt_url": url, "data_dir": str(tmp_path / "data"), "heartbeat_s": 0.5,
        "outbox": {"ack_timeout_s": 30, **outbox}, "devices": [],
    })


@asynccontextmanager
async def running(config: GatewayConfig) -> AsyncIterator[GatewayApp]:
    app = GatewayApp(config)
    task = asyncio.create_task(app.run(), name="gateway-under-test")
    ready = asyncio.create_task(app.ready.wait())
    await asyncio.wait([task, ready], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    assert app.link is not None
    await asyncio.to_thread(app.link.wait_subscribed, 10)
    try:
        yield app
    finally:
        app.stop()
        await asyncio.wait_for(task, 15)


@pytest.fixture
def server(mosquitto: Mosquitto) -> Iterator[FakeServer]:
    fake = FakeServer(mosquitto.url, GW, acking=False)
    yield fake
    fake.close()


def _depth(app: GatewayApp) -> Callable[[], int]:
    assert app.outbox is not None
    return app.outbox.depth


async def test_events_leave_the_outbox_only_after_the_servers_ack(tmp_path: Path, mosquitto: Mosquitto,
                                                                   server: FakeServer) -> None:
    async with running(_config(tmp_path, mosquitto.url)) as app:
        app.record([card("0000000001"), card("0000000002")])
        await wait_until(lambda: set(server.seqs("card_read")) == {2, 3}, what="card reads at the server")
        await asyncio.sleep(0.3)  # give a wrong delete the chance to happen
        assert _depth(app)() == 3  # gateway_started + 2 reads: published, not acknowledged
        server.acking = True
        server.set_status("online", "server-a")  # new instance: the gateway replays, this time acked
        await wait_until(lambda: _depth(app)() == 0, what="the outbox to empty after acks")
        assert set(server.seqs()) == {1, 2, 3}


async def test_unacked_events_are_resent_after_the_ack_timeout(tmp_path: Path, mosquitto: Mosquitto,
                                                               server: FakeServer) -> None:
    async with running(_config(tmp_path, mosquitto.url, ack_timeout_s=0.5)) as app:
        app.record([card()])
        await wait_until(lambda: server.times_received()[2] >= 2, timeout=10, what="a resend after the timeout")
        assert _depth(app)() == 2
        assert app.sender is not None and app.sender.stats.last_replay_reason == "ack timeout"


async def test_server_coming_online_triggers_a_replay(tmp_path: Path, mosquitto: Mosquitto,
                                                      server: FakeServer) -> None:
    async with running(_config(tmp_path, mosquitto.url)) as app:
        # The connect itself replays too, and may send seq 1 twice: count from after it.
        await wait_until(lambda: 1 in server.seqs() and app.sender is not None and app.sender.stats.replays >= 1,
                         what="the gateway_started event")
        before = server.times_received()[1]
        server.set_status("online", "instance-1")
        await wait_until(lambda: server.times_received()[1] > before, what="replay on server online")
        assert app.sender is not None and app.sender.stats.last_replay_reason == "server instance-1 online"
        server.set_status("offline", "instance-1")
        await wait_until(lambda: app.sender is not None and app.sender.holding, what="the gateway to see it")
        app.record([card()])
        await asyncio.sleep(0.3)
        assert 2 not in server.seqs()  # held while the server is away
        server.acking = True
        server.set_status("online", "instance-2")
        await wait_until(lambda: _depth(app)() == 0, what="delivery once the server is back")


async def test_broker_restart_replays_and_status_is_published(tmp_path: Path, mosquitto: Mosquitto,
                                                             server: FakeServer) -> None:
    # The fake server may resubscribe after the gateway's replay; the ack timeout covers that.
    async with running(_config(tmp_path, mosquitto.url, ack_timeout_s=1)) as app:
        await wait_until(lambda: server.seqs()[:1] == [1], what="the gateway_started event")
        await wait_until(lambda: any(s.state == "online" for s in server.statuses), what="a heartbeat")
        status = [s for s in server.statuses if s.state == "online"][-1]
        assert status.outbox_depth == 1 and status.version and status.boot_id == app.boot_id
        await asyncio.to_thread(mosquitto.stop)
        app.record([card()])  # stored while the broker is down
        await asyncio.to_thread(mosquitto.start)
        await wait_until(lambda: 2 in server.seqs(), timeout=20, what="the read after reconnect")
        assert server.seqs().index(2) > 1  # seq 1 was sent again first: replays go in order
    await wait_until(lambda: server.statuses[-1].state == "offline", what="the offline status at shutdown")


async def test_restart_sends_what_the_last_run_left(tmp_path: Path, mosquitto: Mosquitto,
                                                    server: FakeServer) -> None:
    config = _config(tmp_path, mosquitto.url)
    async with running(config) as app:
        app.record([card()])
        await wait_until(lambda: 2 in server.seqs(), what="the read")
    server.acking = True
    async with running(config) as app:
        await wait_until(lambda: _depth(app)() == 0, what="the old events acked")
        # The server sees duplicates (at-least-once); it stores each seq once.
        started = {server.nth(e.seq): e for e in server.received if isinstance(e, wire.GatewayStarted)}
        assert {seq: e.pending for seq, e in started.items()} == {1: 0, 3: 2}
        assert started[1].outbox_id == started[3].outbox_id


async def test_em4100_reader_swipe_reaches_the_server(tmp_path: Path, mosquitto: Mosquitto,
                                                      server: FakeServer) -> None:
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    config = _config(tmp_path, mosquitto.url).model_copy(update={"devices": [
        GatewayConfig.model_validate({
            "gateway_id": GW, "mqtt_url": mosquitto.url, "data_dir": "x",
            "devices": [{"type": "em4100", "id": "reader-1", "door": "front", "port": os.ttyname(slave)}],
        }).devices[0],
    ]})
    server.acking = True
    try:
        async with running(config) as app:
            await wait_until(lambda: server.seqs("device_status") != [], what="the reader online")
            os.write(master, encode_frame(0x14, 0x008EC793))
            await wait_until(lambda: server.seqs("card_read") != [], what="the swipe")
            read = next(e for e in server.received if isinstance(e, wire.CardRead))
            assert (read.device, read.door, read.credential.value) == ("reader-1", "front", "14008EC793")
            assert app.devices_online == {"reader-1": True}
    finally:
        os.close(master)
        os.close(slave)


async def test_line_noise_is_reported_as_a_bad_frame_count(tmp_path: Path, mosquitto: Mosquitto,
                                                            server: FakeServer) -> None:
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    device = GatewayConfig.model_validate({
        "gateway_id": GW, "mqtt_url": mosquitto.url, "data_dir": "x",
        "devices": [{"type": "em4100", "id": "reader-1", "door": "front", "port": os.ttyname(slave),
                     "noise_report_s": 0.2}],
    }).devices[0]
    config = _config(tmp_path, mosquitto.url).model_copy(update={"devices": [device]})
    server.acking = True

    def noise_reports() -> list[wire.DeviceStatus]:
        return [e for e in server.received if isinstance(e, wire.DeviceStatus) and e.bad_frames]

    try:
        async with running(config):
            await wait_until(lambda: server.seqs("device_status") != [], what="the reader online")
            good = encode_frame(0x14, 0x008EC793)
            bad_checksum = good[:11] + (b"00" if good[11:13] != b"00" else b"11") + good[13:]
            os.write(master, bad_checksum + bad_checksum + good)
            await wait_until(lambda: bool(noise_reports()), what="a bad-frame report")
            assert noise_reports()[-1].bad_frames == 2
            await wait_until(lambda: server.seqs("card_read") != [], what="the good frame after the noise")
    finally:
        os.close(master)
        os.close(slave)


_RUN_CLI = (
    "import argparse, sys; from rentgate import logs; from gateway import cli; "
    "p = argparse.ArgumentParser(); cli.register(p.add_subparsers()); "
    "a = p.parse_args(sys.argv[1:]); logs.setup('INFO'); sys.exit(a.func(a))"
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_gateway_process_says_offline_when_it_ends(tmp_path: Path, mosquitto: Mosquitto,
                                                          server: FakeServer, sig: signal.Signals) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'gateway_id = "{GW}"\nmqtt_url = "{mosquitto.url}"\ndata_dir = "data"\n')
    repo = Path(__file__).parents[2]
    proc = subprocess.Popen([sys.executable, "-c", _RUN_CLI, "gateway", "--config", str(config)], cwd=repo,
                            stderr=subprocess.PIPE, text=True)
    try:
        await wait_until(lambda: server.seqs() != [] and bool(server.statuses), timeout=15, what="the gateway up")
        proc.send_signal(sig)
        code = await asyncio.to_thread(proc.wait, 15)
    finally:
        proc.kill()
        stderr = proc.stderr.read() if proc.stderr else ""
    # SIGTERM: a clean exit that says so; SIGKILL: the broker sends the last will.
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), stderr
    await wait_until(lambda: server.statuses[-1].state == "offline", what="the offline status")
    if sig == signal.SIGTERM:
        assert server.statuses[-1].boot_id is not None  # ours, not the last will
