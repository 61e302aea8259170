"""The gateway process killed in the middle of a health gate, as by a power
cut: the next start counts that version as failed and runs the last good one.
Also the first configuration enrolment leaves on disk."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from gateway.remote.local import load_local
from gateway.remote.runner import RESTARTED_IN_GATE
from gateway.remote.store import RemoteStore, write_received
from tests.gateway.fake_server import FakeServer
from tests.gateway.remote.conftest import publish_config
from tests.gateway.remote.helpers import last_status, running, signed, wait_for, write_settings
from tests.services import Mosquitto, MqttProbe, free_port

_RUN_CLI = (
    "import argparse, sys; from rentgate import logs; from gateway import cli; "
    "p = argparse.ArgumentParser(); cli.register(p.add_subparsers()); "
    "a = p.parse_args(sys.argv[1:]); logs.setup('INFO'); sys.exit(a.func(a))"
)
REPO = Path(__file__).parents[3]


def _start(settings: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen([sys.executable, "-c", _RUN_CLI, "gateway", "--config", str(settings)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=err)


async def test_killed_during_the_gate_starts_on_the_last_good(tmp_path: Path, mosquitto: Mosquitto,
                                                              online_server: FakeServer, publisher: MqttProbe) -> None:
    settings = write_settings(tmp_path / "gw", mosquitto.url)
    store = RemoteStore(tmp_path / "gw" / "data" / "remote")
    log = tmp_path / "gateway.log"
    proc = _start(settings, log)
    try:
        publish_config(publisher, signed(2, {"heartbeat_s": 0.4}))
        await wait_for(lambda: last_status(online_server, lambda s: s.config_version == 2) is not None, 20,
                       "version 2 applied")
        # Version 3 cannot reach the broker; its gate is long, the power goes first.
        publish_config(publisher, signed(3, {"broker_url": f"mqtt://127.0.0.1:{free_port()}"}, gate_s=120))
        await wait_for(lambda: store.applying() == 3, 10, "version 3 in its gate")
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
        candidate = store.candidate()
        assert candidate is not None and candidate.version == 3
        boots = {s.boot_id for s in online_server.statuses}
        proc = _start(settings, log)

        def restarted() -> list[str]:
            return [s.boot_id for s in online_server.statuses if s.boot_id not in boots and s.state == "online"
                    and s.boot_id is not None]

        await wait_for(lambda: len(restarted()) >= 3, 20, "three heartbeats of the restarted gateway")
        status = last_status(online_server, lambda s: s.boot_id == restarted()[-1])
        assert status is not None
        assert (status.config_version, status.config_attempted, status.config_state, status.config_error) == \
            (2, 3, "rolled_back", RESTARTED_IN_GATE)
        # The retained version 3 came again on connect and was not retried:
        # the same app is still up (one boot id), nothing in a gate.
        assert len(set(restarted())) == 1 and store.applying() is None and store.candidate() is None
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        proc.kill()
        proc.wait()
    state = store.state()
    assert state.failed_version == 3 and state.report.error == RESTARTED_IN_GATE, log.read_text()


async def test_the_enrolment_configuration_is_applied_at_first_start(tmp_path: Path, mosquitto: Mosquitto,
                                                                     online_server: FakeServer) -> None:
    settings = write_settings(tmp_path / "gw", mosquitto.url)
    path = write_received(tmp_path / "gw" / "data", signed(1, {"heartbeat_s": 0.3}))
    async with running(load_local(settings)) as (runner, task):
        await wait_for(lambda: runner.report().state == "applied", 15, "version 1 applied", task)
        assert runner.report().version == 1 and runner.app is not None and runner.app.config.heartbeat_s == 0.3
        assert not path.exists()


async def test_a_refused_enrolment_configuration_is_reported(tmp_path: Path, mosquitto: Mosquitto,
                                                            online_server: FakeServer) -> None:
    settings = write_settings(tmp_path / "gw", mosquitto.url)
    path = write_received(tmp_path / "gw" / "data", signed(1, {"heartbeat_s": 0.3}, gw="gw-someone-else"))
    async with running(load_local(settings)) as (runner, _task):
        assert runner.report().state == "refused" and not path.exists()
        assert runner.app is not None and runner.app.config.heartbeat_s == 0.5
        await wait_for(lambda: last_status(online_server, lambda s: s.config_state == "refused") is not None, 10,
                       "the refusal in the status")
