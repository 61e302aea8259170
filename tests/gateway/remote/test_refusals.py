"""Configurations the gateway refuses: nothing changes, the status says why."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from gateway.remote.runner import Runner
from rentgate import wire
from tests.gateway.fake_server import FakeServer
from tests.gateway.remote.conftest import publish_config
from tests.gateway.remote.helpers import (
    KEY_ID,
    OTHER_KEY,
    last_status,
    local_settings,
    running,
    sign_text,
    signed,
    wait_for,
)
from tests.services import Mosquitto, MqttProbe

GATE_S = 5.0


async def test_refused_configurations_change_nothing(tmp_path: Path, mosquitto: Mosquitto, online_server: FakeServer,
                                                     publisher: MqttProbe) -> None:
    async with running(local_settings(tmp_path / "gw", mosquitto.url)) as (runner, task):
        publish_config(publisher, signed(2, {"heartbeat_s": 0.4}, gate_s=GATE_S))
        await wait_for(lambda: runner.report().state == "applied", GATE_S + 10, "version 2", task)
        app, apps = runner.app, runner.apps_started
        good = signed(3, {"heartbeat_s": 0.3})
        envelope = json.loads(good)
        cases: list[tuple[bytes, int | None, str]] = [
            (signed(1, {"heartbeat_s": 0.2}), 1, "replayed version 1: version 2 runs"),
            (signed(3, {"heartbeat_s": 0.2}, gw="gw-other"), None, "configuration for another gateway (gw-other)"),
            (signed(3, {"heartbeat_s": 0.2}, key=OTHER_KEY), None, f"bad signature (key '{KEY_ID}')"),
            (json.dumps({**envelope, "payload": envelope["payload"].replace("0.3", "0.2")}).encode(), None,
             f"bad signature (key '{KEY_ID}')"),
            (signed(3, {"heartbeat_s": 0.2}, key_id="unknown"), None, "signed with unknown key 'unknown'"),
            (b"{not json", None, "malformed configuration message"),
            (sign_text('{"kind": "gateway_config", "gw": "gw-test", "version": 3}'), None, "malformed configuration"),
            (signed(3, {"gateway_id": "gw-x", "heartbeat_s": -1}), 3,
             "invalid settings: gateway_id: may not be set by a remote configuration"),
            (signed(3, {"heartbeat_s": -1}), 3, "invalid settings: heartbeat_s:"),
        ]
        for message, attempted, reason in cases:
            publish_config(publisher, message)
            await wait_for(_error_starts(runner, reason), 10, reason, task)
            report = runner.report()
            assert (report.version, report.attempted, report.state) == (2, attempted, "refused"), reason
            assert runner.app is app and runner.apps_started == apps, reason
            await wait_for(_status_says(online_server, reason), 10, f"the status saying {reason}")
        assert app is not None and app.config.heartbeat_s == 0.4
        # After refusals, a good newer version still applies.
        publish_config(publisher, good)
        await wait_for(lambda: runner.report().state == "applied" and runner.report().version == 3, GATE_S + 10,
                       "version 3", task)



def _error_starts(runner: Runner, reason: str) -> Callable[[], bool]:
    return lambda: (runner.report().error or "").startswith(reason)


def _status_says(server: FakeServer, reason: str) -> Callable[[], bool]:
    def found(status: wire.GatewayStatus) -> bool:
        return status.config_state == "refused" and (status.config_error or "").startswith(reason)

    return lambda: last_status(server, found) is not None
