"""Remote configuration end to end on a real Mosquitto: a version applied
behind the health gate, bad ones rolled back, and the gateway reachable again."""

from __future__ import annotations

import os
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.remote.store import RemoteStore
from rentgate import wire
from tests.gateway.fake_server import FakeServer
from tests.gateway.helpers import card
from tests.gateway.remote.conftest import publish_config
from tests.gateway.remote.helpers import last_status, local_settings, running, signed, wait_for
from tests.services import Mosquitto, MqttProbe, free_port

GATE_S = 5.0


@pytest.fixture
def pty_port() -> Iterator[str]:
    """A serial port that exists (a pty): an EM4100 reader on it comes online."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


def _store(tmp_path: Path) -> RemoteStore:
    return RemoteStore(tmp_path / "gw" / "data" / "remote")


async def test_a_valid_version_is_applied_and_reported(tmp_path: Path, mosquitto: Mosquitto, online_server: FakeServer,
                                                       publisher: MqttProbe, pty_port: str) -> None:
    local = local_settings(tmp_path / "gw", mosquitto.url)
    async with running(local) as (runner, task):
        first = runner.app
        assert first is not None and runner.report().version is None
        settings = {"heartbeat_s": 0.3, "devices": [{"type": "em4100", "id": "r1", "door": "front", "port": pty_port}]}
        publish_config(publisher, signed(2, settings, gate_s=GATE_S))
        await wait_for(lambda: runner.report().state == "applied" and runner.settled, GATE_S + 10, "version 2 applied",
                       task)
        assert runner.report() == type(runner.report())(version=2, attempted=2, state="applied")
        app = runner.app
        assert app is not None and app is not first
        assert app.config.heartbeat_s == 0.3 and app.devices_online == {"r1": True}
        status = await _status(online_server, lambda s: s.config_state == "applied" and bool(s.devices))
        assert status.config_version == 2 and status.config_attempted == 2 and status.config_error is None
        assert status.devices is not None
        assert [(d.id, d.type, d.state) for d in status.devices] == [("r1", "em4100", "ok")]
        assert status.disk_total_bytes and status.disk_free_bytes is not None and status.mem_rss_bytes
        store = _store(tmp_path)
        good = store.good()
        assert good is not None and good.version == 2 and store.applying() is None and store.candidate() is None
        # Its own retained copy, delivered again on every connect, changes nothing.
        runner.received(signed(2, settings, gate_s=GATE_S))
        assert runner.app is app and runner.report().state == "applied"
    # The next start runs the last good version at once.
    async with running(local) as (runner, task):
        assert runner.app is not None and runner.app.config.heartbeat_s == 0.3
        assert runner.report().version == 2 and runner.apps_started == 1


async def test_a_version_that_cuts_the_broker_is_rolled_back(tmp_path: Path, mosquitto: Mosquitto,
                                                             online_server: FakeServer, publisher: MqttProbe) -> None:
    async with running(local_settings(tmp_path / "gw", mosquitto.url)) as (runner, task):
        closed = f"mqtt://127.0.0.1:{free_port()}"
        started = time.monotonic()
        publish_config(publisher, signed(2, {"broker_url": closed, "heartbeat_s": 0.4}, gate_s=GATE_S))
        await wait_for(lambda: runner.report().state == "rolled_back" and runner.settled, GATE_S + 10, "the rollback",
                       task)
        assert time.monotonic() - started < GATE_S + 4
        report = runner.report()
        assert (report.version, report.attempted) == (None, 2)
        assert report.error == f"broker not reachable within {GATE_S:g} s: connection refused"
        app = runner.app
        assert app is not None and app.config.mqtt_url == mosquitto.url and app.config.heartbeat_s == 0.5
        # Reachable again: the status says why, and events reach the server,
        # including what the failed attempt recorded meanwhile.
        status = await _status(online_server, lambda s: s.config_state == "rolled_back")
        assert status.config_error == report.error and status.config_attempted == 2
        app.record([card("00000000AB")])
        await wait_for(lambda: any(isinstance(e, wire.CardRead) and e.credential.value == "00000000AB"
                                   for e in online_server.received), 10, "a read after the rollback")
        await wait_for(lambda: _started_events(online_server) >= 3, 10, "the failed attempt's start event")
        # The version that failed is not retried: its retained copy comes back on every connect.
        apps = runner.apps_started
        runner.received(signed(2, {"broker_url": closed}, gate_s=GATE_S))
        assert runner.apps_started == apps and runner.report().state == "rolled_back"
        failed = _store(tmp_path).state()
        assert failed.failed_version == 2 and failed.report == report
        # A newer version is tried again.
        publish_config(publisher, signed(3, {"heartbeat_s": 0.4}, gate_s=GATE_S))
        await wait_for(lambda: runner.report().state == "applied", GATE_S + 10, "version 3", task)
        assert runner.report().version == 3


async def test_a_device_that_stays_offline_rolls_back(tmp_path: Path, mosquitto: Mosquitto, online_server: FakeServer,
                                                      publisher: MqttProbe) -> None:
    async with running(local_settings(tmp_path / "gw", mosquitto.url)) as (runner, task):
        missing = str(tmp_path / "no-such-tty")
        publish_config(publisher, signed(2, {"devices": [{"type": "em4100", "id": "r1", "port": missing}]},
                                         gate_s=GATE_S))
        await wait_for(lambda: runner.report().state == "rolled_back" and runner.settled, GATE_S + 10, "the rollback",
                       task)
        error = runner.report().error
        assert error is not None and error.startswith("device r1 offline"), error
        assert runner.app is not None and runner.app.config.devices == []
        await _status(online_server, lambda s: s.config_state == "rolled_back" and s.config_error == error)


async def test_a_version_that_cannot_start_rolls_back(tmp_path: Path, mosquitto: Mosquitto, online_server: FakeServer,
                                                      publisher: MqttProbe, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.app import GatewayApp

    real_run = GatewayApp.run

    async def run(self: GatewayApp, *, install_signal_handlers: bool = False) -> None:
        if self.config.heartbeat_s == 0.25:  # the version under test: fails as it opens
            raise OSError(28, "No space left on device")
        await real_run(self, install_signal_handlers=install_signal_handlers)

    monkeypatch.setattr(GatewayApp, "run", run)
    async with running(local_settings(tmp_path / "gw", mosquitto.url)) as (runner, task):
        publish_config(publisher, signed(2, {"heartbeat_s": 0.25}, gate_s=GATE_S))
        await wait_for(lambda: runner.report().state == "rolled_back" and runner.settled, 10, "the rollback", task)
        assert runner.report().error == "the gateway could not start: OSError: [Errno 28] No space left on device"
        await _status(online_server, lambda s: s.config_state == "rolled_back")


async def _status(server: FakeServer, predicate: object, timeout: float = 10) -> wire.GatewayStatus:
    assert callable(predicate)
    await wait_for(lambda: last_status(server, predicate) is not None, timeout, "a matching status")
    found = last_status(server, predicate)
    assert found is not None
    return found


def _started_events(server: FakeServer) -> int:
    return len({e.seq for e in server.received if isinstance(e, wire.GatewayStarted)})
