"""A gateway with an OSDP reader and access control on: the allowlist arrives
signed over MQTT, cards are granted or denied at the door with a reason, the
lock relay is pulsed only on a grant, door contacts become door events, and
all of it keeps working while the broker is down."""

from __future__ import annotations

import time
from pathlib import Path

from firmware_sim.osdp_reader import SimOsdpLine, SimOsdpReader
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from rentgate import signing, wire
from rentgate.wire import Credential
from tests.gateway.access.helpers import SERVER_KEY
from tests.gateway.fake_server import FakeServer
from tests.gateway.helpers import GW, publish_allowlist, wait_until
from tests.gateway.test_app import running
from tests.services import Mosquitto

TENANT = Credential(format="wiegand26", value="90:324")
GONE = Credential(format="wiegand26", value="90:325")


def _config(tmp_path: Path, mosquitto: Mosquitto, port: str) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "gateway_id": GW, "mqtt_url": mosquitto.url, "data_dir": str(tmp_path / "data"), "heartbeat_s": 0.5,
        "outbox": {"ack_timeout_s": 2},
        "access": {"public_keys": {"k1": signing.public_key_b64(SERVER_KEY.public_key())},
                   "unlock_pulse_ms": 300, "held_open_s": 0.5},
        "devices": [{"type": "osdp", "id": "line-1", "port": port, "channel_id": 1, "readers": [
            {"id": "reader-front", "door": "front", "address": 1},
        ]}],
    })


def _reads(server: FakeServer) -> list[tuple[str, str | None, str | None]]:
    return [(e.credential.value, e.decision, e.reason) for e in server.received if isinstance(e, wire.CardRead)]


def _doors(server: FakeServer) -> list[str]:
    return [e.state for e in server.received if isinstance(e, wire.DoorState)]


def _relay_pulses(reader: SimOsdpReader) -> int:
    return len(reader.commands("output"))


async def _ready(app: GatewayApp, server: FakeServer) -> None:
    await wait_until(lambda: app.access is not None and app.access.store.version == 1, what="the allowlist")
    # Its status tells the operator which allowlist the door decides from.
    await wait_until(lambda: any(s.allowlist_version == 1 for s in server.statuses), what="the version in the status")
    await wait_until(lambda: any(isinstance(e, wire.DeviceStatus) and e.online and e.device == "reader-front"
                                 for e in server.received), what="the reader online")


async def test_grant_opens_the_lock_and_a_denial_says_why(tmp_path: Path, mosquitto: Mosquitto,
                                                         server: FakeServer) -> None:
    publish_allowlist(mosquitto, TENANT, revoked=[GONE])
    with SimOsdpLine() as sim:
        reader = sim.add_reader(1)
        async with running(_config(tmp_path, mosquitto, sim.pts)) as app:
            await _ready(app, server)
            reader.present(90, 324)
            await wait_until(lambda: _reads(server) == [("90:324", "granted", None)], what="the grant")
            await wait_until(lambda: _relay_pulses(reader) == 1, what="the lock relay pulsed")
            reader.set_inputs(True)   # the tenant pushes the door open ...
            reader.set_inputs(False)  # ... and it closes behind them
            await wait_until(lambda: _doors(server) == ["open", "closed"], what="a normal passage")

            reader.present(90, 325)
            reader.present(1, 2)
            await wait_until(lambda: len(_reads(server)) == 3, what="two denials")
            assert _reads(server)[1:] == [("90:325", "denied", "revoked"), ("1:2", "denied", "unknown")]
            # Every decision is shown on the reader; only the grant pulsed the relay.
            await wait_until(lambda: len(reader.commands("led")) >= 3, what="feedback for each decision")
            assert _relay_pulses(reader) == 1

            assert app.access is not None
            front = app.access.controller.door("front")
            await wait_until(lambda: not front.unlock_window_open(time.monotonic()), what="the lock to close again")
            reader.set_inputs(True)  # no grant: someone forced the door
            await wait_until(lambda: "forced" in _doors(server), what="the forced-door alarm")
            await wait_until(lambda: "held_open" in _doors(server), what="the held-open alarm")
            reader.set_inputs(False)


async def test_decisions_go_on_while_the_broker_is_down(tmp_path: Path, mosquitto: Mosquitto,
                                                       server: FakeServer) -> None:
    publish_allowlist(mosquitto, TENANT, revoked=[GONE])
    with SimOsdpLine() as sim:
        reader = sim.add_reader(1)
        async with running(_config(tmp_path, mosquitto, sim.pts)) as app:
            await _ready(app, server)
            mosquitto.stop()
            reader.present(90, 324)
            await wait_until(lambda: _relay_pulses(reader) == 1, what="the door to open with no broker")
            reader.present(1, 2)
            assert app.outbox is not None
            await wait_until(lambda: app.outbox is not None and app.outbox.depth() >= 2,
                             what="both decisions kept in the outbox")
            mosquitto.start()
            await wait_until(lambda: len(_reads(server)) == 2, timeout=20, what="the decisions delivered later")
            assert _reads(server) == [("90:324", "granted", None), ("1:2", "denied", "unknown")]
