"""A face/card terminal whose clock is wrong and a door camera on the same
door, both real: the terminal simulator (firmware_sim/isapi_terminal.py)
decides from its own list and pushes its read to the gateway's listener; the
live camera simulator (firmware_sim/camera/) is read over HTTP by the real
counting pipeline. The tenant let in by the terminal is the person the camera
sees walk in, whatever the terminal's clock says, and the read is stored at
the time the clock rule gives (gateway/terminals/clock.py); someone who walks
in with no card is still an unidentified entry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from firmware_sim.camera.live import LiveScene
from firmware_sim.camera.mjpeg import MjpegServer
from firmware_sim.isapi_terminal import IsapiTerminalSim
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from rentgate import signing, wire
from rentgate.wire import Credential
from tests.gateway.access.helpers import SERVER_KEY
from tests.gateway.fake_server import FakeServer
from tests.gateway.helpers import GW, publish_allowlist, wait_until
from tests.gateway.test_app import running
from tests.services import Mosquitto, free_port

PASSWORD = "Passw0rd!"
TERMINAL = "k1t-front"
CAMERA = "cam-front"
TENANT = Credential(format="raw", value="14008EC793")  # the server keeps em4100 cards as raw hex
TENANT_CARD = str(int(TENANT.value, 16))  # what the terminal's reader reads: the card number in decimal
TWO_HOURS_S = 2 * 3600.0


@dataclass
class Door:
    app: GatewayApp
    terminal: IsapiTerminalSim
    scene: LiveScene


def _of(server: FakeServer, kind: type[Any]) -> list[Any]:
    return [e for e in list(server.received) if isinstance(e, kind)]


def _camera_events(server: FakeServer) -> list[Any]:
    return [e for e in list(server.received) if e.kind in wire.CAMERA_KINDS]


@asynccontextmanager
async def _front_door(tmp_path: Path, mosquitto: Mosquitto, server: FakeServer,
                      clock_offset_s: float) -> AsyncIterator[Door]:
    """A running gateway with the terminal (its clock ``clock_offset_s`` off,
    measured by the sync) and the camera of one door, both working."""
    publish_allowlist(mosquitto, TENANT)
    listen_port = free_port()
    (tmp_path / "k1t.pw").write_text(PASSWORD)
    scene = LiveScene(width=320, height=240)
    line = scene.line
    async with IsapiTerminalSim(password=PASSWORD, push_url=f"http://127.0.0.1:{listen_port}/isapi/events",
                                push_retry_s=0.05, push_retry_max_s=0.3) as terminal:
        terminal.clock_offset_s = clock_offset_s
        with MjpegServer(scene, fps=10) as camera:
            config = GatewayConfig.model_validate({
                "gateway_id": GW, "mqtt_url": mosquitto.url, "data_dir": str(tmp_path / "data"), "heartbeat_s": 0.5,
                "outbox": {"ack_timeout_s": 2},
                # The grants here come before the crossings: a short wait for a
                # late one decides each entry sooner.
                "cameras": {"grant_after_s": 0.5},
                "access": {"public_keys": {"k1": signing.public_key_b64(SERVER_KEY.public_key())}},
                "devices": [
                    # The listener routes the terminal's pushes (by its MAC) to
                    # the device its [[terminals]] table keeps (and measures).
                    {"type": "hikvision_isapi", "id": "hik-listener", "host": "127.0.0.1", "port": listen_port,
                     "terminals": {terminal.mac: {"device": TERMINAL, "door": "front"}}},
                    {"type": "camera", "id": CAMERA, "door": "front", "url": camera.url, "fps": 10,
                     "line": [line.x1, line.y1, line.x2, line.y2], "inward": line.inward, "detector": "hog"},
                ],
                "terminals": [{"id": TERMINAL, "url": terminal.url, "password_file": str(tmp_path / "k1t.pw"),
                               "doors": ["front"], "probe_interval_s": 0.3, "retry_max_s": 0.5}],
            })
            async with running(config) as app:
                sync = app.terminals[0]
                await wait_until(lambda: sync.health.version_held == 1 and sync.caught_up_to is not None
                                 and sync.health.clock_offset_s is not None, timeout=20,
                                 what="the tenant on the terminal and its clock measured")
                offset = sync.health.clock_offset_s
                assert offset is not None and abs(offset - clock_offset_s) < 5, offset
                await wait_until(lambda: any(isinstance(e, wire.DeviceStatus) and e.device == CAMERA and e.online
                                             for e in list(server.received)), timeout=20, what="the camera online")
                yield Door(app, terminal, scene)
                assert app.outbox is not None
                outbox = app.outbox
                await wait_until(lambda: outbox.depth() == 0, timeout=20, what="the outbox emptied")


async def _tenant_walks_in(door: Door, server: FakeServer) -> tuple[datetime, datetime, wire.CardRead]:
    """The tenant shows the card and walks in: (when, the terminal's stamp,
    the read the server stored)."""
    before = len(_camera_events(server))
    presented_at = datetime.now(UTC)
    event = await door.terminal.present_card(TENANT_CARD)
    assert event.granted, "the terminal lets the tenant in by its own list"
    # The tenant walks in once the gateway has the read, as at a real door
    # (the push is quick there; a loaded test machine could delay it past
    # the camera's short wait for a late grant).
    await door.terminal.delivered(event.serial_no, timeout=20)
    door.scene.enqueue(1, "in")
    await wait_until(lambda: len(_camera_events(server)) > before, timeout=30, what="the camera's event of the tenant")
    reads = [r for r in _of(server, wire.CardRead) if r.device == TERMINAL]
    assert len(reads) == 1 and reads[0].decision == "granted" and reads[0].door == "front", reads
    assert event.time is not None
    return presented_at, event.time, reads[0]


def _matched_entry(server: FakeServer, read: wire.CardRead) -> wire.PeopleCrossing:
    entries = _of(server, wire.PeopleCrossing)
    assert len(entries) == 1, f"the tenant's entry is not a matched entry: {_camera_events(server)}"
    entry: wire.PeopleCrossing = entries[0]
    assert (entry.device, entry.door, entry.direction) == (CAMERA, "front", "in")
    assert entry.grant_seq == read.seq, "the entry is matched with the terminal's grant"
    return entry


async def test_a_terminal_two_hours_slow_has_its_tenant_matched_by_the_camera(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer) -> None:
    async with _front_door(tmp_path, mosquitto, server, -TWO_HOURS_S) as door:
        # Someone walks in with no card: the camera's count alone, on nobody's grant.
        door.scene.enqueue(1, "in")
        await wait_until(lambda: bool(_of(server, wire.UnidentifiedEntry)), timeout=30,
                         what="the unidentified entry")
        presented_at, stamped, read = await _tenant_walks_in(door, server)
    entry = _matched_entry(server, read)
    # The terminal stamped the read two hours early; it is stored at its
    # corrected time, when the card was shown, never after it reached the gateway.
    assert abs((presented_at - stamped).total_seconds() - TWO_HOURS_S) < 5, stamped
    assert abs(read.ts - presented_at) < timedelta(seconds=5), read.ts
    assert read.ts <= entry.ts
    alone = _of(server, wire.UnidentifiedEntry)
    assert len(alone) == 1 and alone[0].ts < presented_at
    assert len(_camera_events(server)) == 2, _camera_events(server)  # no tailgating, nothing else


async def test_a_terminal_slow_within_its_tolerance_keeps_its_time_and_the_camera_still_matches(
        tmp_path: Path, mosquitto: Mosquitto, server: FakeServer) -> None:
    # 90 s slow is within clock_tolerance_s (120 s): the terminal's stamp is
    # believed and the read stored at it, 90 s before the tenant walks in,
    # further back than the camera's window (grant_before_s, 10 s); the
    # camera matches with when the read arrived.
    async with _front_door(tmp_path, mosquitto, server, -90.0) as door:
        presented_at, stamped, read = await _tenant_walks_in(door, server)
    _matched_entry(server, read)
    assert read.ts == stamped
    assert abs((presented_at - read.ts).total_seconds() - 90) < 3, read.ts
    assert len(_camera_events(server)) == 1, _camera_events(server)
