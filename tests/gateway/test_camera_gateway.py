"""A whole gateway with a door camera (a video file played in real time; the
crossings scripted by a stand-in pipeline), Mosquitto, a fake server and a
snapshot HTTP server: crossings matched with grants become the right events,
only alerts keep their pictures and those reach the server; and a busy
camera does not slow a door decision."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

import gateway.devices.camera as camera_adapter
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from rentgate import signing, wire
from rentgate.wire import Credential
from tests.devices.mjpeg_server import write_video
from tests.gateway.access.helpers import SERVER_KEY
from tests.gateway.camera_fakes import JPEG, FakePipelines, ScriptedHealth
from tests.gateway.fake_server import FakeServer
from tests.gateway.helpers import GW, publish_allowlist, wait_until
from tests.gateway.test_app import running
from tests.gateway.test_camera_uploads import SnapshotServer
from tests.services import Mosquitto

TENANT = Credential(format="wiegand26", value="90:324")


@pytest.fixture
def pipelines(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> FakePipelines:
    factory = FakePipelines(**getattr(request, "param", {}))
    monkeypatch.setattr(camera_adapter, "_real_pipeline", factory)
    monkeypatch.setattr(camera_adapter, "_real_health", lambda config: ScriptedHealth({}))
    return factory


def _config(tmp_path: Path, mosquitto: Mosquitto, video: Path, **extra: Any) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "gateway_id": GW, "mqtt_url": mosquitto.url, "data_dir": str(tmp_path / "data"), "heartbeat_s": 0.5,
        "outbox": {"ack_timeout_s": 2},
        "devices": [{"type": "camera", "id": "cam-front", "door": "front", "url": str(video), "loop": True,
                     "fps": 10, "line": [20, 120, 300, 120]}],
        **extra,
    })


def _video(tmp_path: Path) -> Path:
    path = tmp_path / "door.avi"
    write_video(str(path), seconds=2.0, fps=25)
    return path


def _of(server: FakeServer, kind: type[Any]) -> list[Any]:
    return [e for e in server.received if isinstance(e, kind)]


async def _camera_online(server: FakeServer) -> None:
    await wait_until(lambda: any(isinstance(e, wire.DeviceStatus) and e.device == "cam-front" and e.online
                                 for e in server.received), what="the camera online")


async def test_crossings_become_matched_entries_alerts_and_exits(tmp_path: Path, mosquitto: Mosquitto,
                                                                 server: FakeServer,
                                                                 pipelines: FakePipelines) -> None:
    snapshots = SnapshotServer()
    await snapshots.start()
    config = _config(tmp_path, mosquitto, _video(tmp_path), cameras={
        "server_url": snapshots.url, "grant_before_s": 1.5, "grant_after_s": 0.3})
    try:
        async with running(config) as app:
            await _camera_online(server)
            # A face terminal at the door let a tenant in (its own verdict) ...
            app.card_read("terminal-front", "front", wire.utcnow(), TENANT, None, verdict=True)
            await wait_until(lambda: len(_of(server, wire.CardRead)) == 1, what="the terminal's read")
            read = _of(server, wire.CardRead)[0]
            assert read.decision == "granted"
            # ... and two people walked in on it; one walked out.
            pipelines.current.walk("in")
            pipelines.current.walk("in")
            pipelines.current.walk("out")
            await wait_until(lambda: len(_of(server, wire.PeopleCrossing)) == 2, what="the entry and the exit")
            await wait_until(lambda: len(_of(server, wire.Tailgating)) == 1, what="the tailgating")
            crossings = {e.direction: e for e in _of(server, wire.PeopleCrossing)}
            assert crossings["in"].grant_seq == read.seq and crossings["in"].snapshot is None
            assert crossings["out"].grant_seq is None and crossings["out"].snapshot is None
            tail = _of(server, wire.Tailgating)[0]
            assert (tail.entered, tail.granted, tail.door, tail.device) == (2, 1, "front", "cam-front")
            assert tail.snapshot is not None

            # Later, someone walks in with no grant at all.
            await asyncio.sleep(2.0)
            pipelines.current.walk("in")
            await wait_until(lambda: len(_of(server, wire.UnidentifiedEntry)) == 1, what="the unidentified entry")
            alone = _of(server, wire.UnidentifiedEntry)[0]
            assert alone.snapshot is not None

            # Only the two alerts kept a picture, and each reaches the server
            # once the server has its event.
            folder = tmp_path / "data" / "snapshots"
            assert {p.name for p in folder.glob("*.jpg")} <= {f"{tail.snapshot}.jpg"}  # same bytes, one file
            snapshots.events.update({tail.seq: tail.snapshot, alone.seq: alone.snapshot})
            assert app.snapshot_uploads is not None
            app.snapshot_uploads.wake()
            await wait_until(lambda: set(snapshots.stored) == {tail.seq, alone.seq}, timeout=10, what="the uploads")
            assert snapshots.stored[tail.seq] == JPEG
            await wait_until(lambda: not list(folder.glob("*.jpg")), what="the local pictures deleted")
            assert app.cameras is not None
            assert app.cameras.stats.snapshots_discarded == 2  # the matched entry's and the exit's
    finally:
        await snapshots.stop()


async def test_without_a_server_url_the_pictures_stay(tmp_path: Path, mosquitto: Mosquitto, server: FakeServer,
                                                    pipelines: FakePipelines, caplog: pytest.LogCaptureFixture) -> None:
    config = _config(tmp_path, mosquitto, _video(tmp_path), cameras={"grant_after_s": 0.2})
    async with running(config) as app:
        await _camera_online(server)
        pipelines.current.walk("in")
        await wait_until(lambda: len(_of(server, wire.UnidentifiedEntry)) == 1, what="the unidentified entry")
        assert app.snapshot_uploads is not None and app.snapshot_uploads.server_url is None
    event = _of(server, wire.UnidentifiedEntry)[0]
    assert (tmp_path / "data" / "snapshots" / f"{event.snapshot}.jpg").read_bytes() == JPEG
    assert "server_url is not set" in caplog.text


async def _decision_times(app: GatewayApp, reads: int) -> list[float]:
    """Seconds from a card presented to the door told to open (decision and
    the read on disk), one read at a time."""
    times = []
    for _ in range(reads):
        opened = asyncio.Event()
        started = time.perf_counter()
        took: list[float] = []

        def respond(granted: bool, unlock_s: float, took: list[float] = took, opened: asyncio.Event = opened) -> None:
            assert granted
            took.append(time.perf_counter() - started)
            opened.set()

        app.card_read("reader-front", "front", wire.utcnow(), TENANT, respond)
        await asyncio.wait_for(opened.wait(), 5)
        times.append(took[0])
        await asyncio.sleep(0.02)
    return times


@pytest.mark.parametrize("pipelines", [{"busy_s": 0.0}], indirect=True)
async def test_a_busy_camera_does_not_slow_the_door(tmp_path: Path, mosquitto: Mosquitto, server: FakeServer,
                                                   pipelines: FakePipelines) -> None:
    publish_allowlist(mosquitto, TENANT)
    config = _config(tmp_path, mosquitto, _video(tmp_path), access={
        "public_keys": {"k1": signing.public_key_b64(SERVER_KEY.public_key())}})
    async with running(config) as app:
        await wait_until(lambda: app.access is not None and app.access.store.version == 1, what="the allowlist")
        await _camera_online(server)
        idle = await _decision_times(app, 30)
        # Every frame now takes the analysis 300 ms of OpenCV work on a 1080p
        # picture: the camera falls behind and drops frames; the door must not.
        pipelines.current.busy_s = 0.3
        await wait_until(lambda: pipelines.current.frames >= 3, what="busy frames")
        busy = await _decision_times(app, 30)
        # The gateway's own grants are the ones the camera's entries are matched with.
        pipelines.current.walk("in")
        await wait_until(lambda: len(_of(server, wire.PeopleCrossing)) == 1, timeout=10, what="the matched entry")
        granted = {e.seq for e in _of(server, wire.CardRead) if e.decision == "granted"}
        entry = _of(server, wire.PeopleCrossing)[0]
        assert entry.direction == "in" and entry.grant_seq in granted
    idle_p50, busy_p50 = statistics.median(idle), statistics.median(busy)
    print(f"door decision p50 idle {idle_p50 * 1000:.2f} ms, camera busy {busy_p50 * 1000:.2f} ms; "
          f"max {max(idle) * 1000:.2f} / {max(busy) * 1000:.2f} ms")
    # A door that waited on the camera would take the analysis' 300 ms per
    # frame. The two phases run seconds apart while the other test worker's
    # load changes, so the bounds catch that, not a millisecond's noise; the
    # milliseconds themselves are bench/camera.py's to measure.
    assert busy_p50 < idle_p50 + 0.02
    assert sorted(busy)[-2] < max(0.2, 3 * sorted(idle)[-2])
