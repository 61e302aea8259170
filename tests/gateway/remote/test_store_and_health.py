"""The state files and the status collectors, without a broker."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.health import ConfigReport, DeviceTracker, device_state, mem_available, mem_rss, resources
from gateway.remote.local import load_local
from gateway.remote.runner import RESTARTED_IN_GATE, Runner
from gateway.remote.store import RemoteStore, State, Version, received_path, write_received
from tests.gateway.remote.helpers import signed, write_settings


def test_files_round_trip_and_stay_private(tmp_path: Path) -> None:
    store = RemoteStore(tmp_path / "remote")
    assert (store.good(), store.candidate(), store.applying(), store.state()) == (None, None, None, State(ConfigReport()))
    version = Version(3, 30.0, {"heartbeat_s": 5}, '{"signed": 1}')
    store.set_good(version)
    store.set_candidate(Version(4, 10.0, {}, "{}"))
    store.mark_applying(4)
    state = State(ConfigReport(3, 4, "rolled_back", "device r1 offline"), 4)
    store.save_state(state)
    assert (store.good(), store.applying(), store.state()) == (version, 4, state)
    assert (tmp_path / "remote" / "applying").read_text() == "applying 4\n"
    assert oct(os.stat(tmp_path / "remote" / "good.json").st_mode & 0o777) == "0o600"
    assert [p.name for p in (tmp_path / "remote").iterdir() if p.name.startswith(".")] == []  # no temporaries left
    store.clear_applying()
    store.clear_candidate()
    store.clear_applying()  # twice is fine
    assert (store.applying(), store.candidate()) == (None, None)


def test_damaged_files_are_ignored_not_fatal(tmp_path: Path) -> None:
    store = RemoteStore(tmp_path)
    (tmp_path / "good.json").write_text("{half")
    (tmp_path / "applying").write_text("garbage")
    (tmp_path / "state.json").write_text('{"version": "x"}')
    assert (store.good(), store.applying(), store.state()) == (None, None, State(ConfigReport()))


async def test_the_power_cut_rule_at_start(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, "mqtt://127.0.0.1:1")
    store = RemoteStore(tmp_path / "data" / "remote")
    store.set_good(Version(2, 5.0, {"heartbeat_s": 0.4}, "{}"))
    store.set_candidate(Version(3, 5.0, {}, "{}"))
    store.mark_applying(3)
    runner = Runner(load_local(settings))
    runner._recover()
    assert runner.report() == ConfigReport(2, 3, "rolled_back", RESTARTED_IN_GATE)
    assert (store.applying(), store.candidate(), store.state().failed_version) == (None, None, 3)
    assert runner._good_config().heartbeat_s == 0.4
    # Cut after the good version was written but before the marker went: kept.
    store.set_good(Version(4, 5.0, {}, "{}"))
    store.mark_applying(4)
    runner = Runner(load_local(settings))
    runner._recover()
    assert runner.report() == ConfigReport(4, 4, "applied")
    # Cut after the failure was recorded: its own reason stays.
    store.save_state(State(ConfigReport(4, 5, "rolled_back", "device r1 offline"), 5))
    store.mark_applying(5)
    runner = Runner(load_local(settings))
    runner._recover()
    assert runner.report().error == "device r1 offline"


def test_enrolment_leaves_the_first_configuration_where_the_runner_looks(tmp_path: Path) -> None:
    message = signed(1, {})
    path = write_received(tmp_path, message)
    assert path == received_path(tmp_path) == tmp_path / "remote" / "received.json"
    assert RemoteStore(tmp_path / "remote").received() == message


def test_device_states_for_the_status() -> None:
    assert device_state("em4100", None, None) == "starting"
    assert device_state("em4100", True, None) == "ok"
    assert device_state("em4100", False, "could not open port") == "offline"
    assert device_state("camera", False, "picture frozen: the camera sends the same frame") == "frozen"
    assert device_state("camera", False, "picture dark: lens covered") == "dark"
    assert device_state("camera", False, "picture moved: view moved") == "moved"
    assert device_state("camera", False, "camera unreachable: timed out") == "no_frames"
    tracker = DeviceTracker([("r1", "em4100"), ("cam", "camera")])
    tracker.update("cam", "camera", True, "receiving 640x480 pictures")
    tracker.update("cam", "camera", False, "picture dark: lens covered")
    health = {d.id: d for d in tracker.health()}
    assert (health["r1"].state, health["r1"].last_seen_s) == ("starting", None)
    assert health["cam"].state == "dark" and health["cam"].last_seen_s is not None
    assert health["cam"].detail == "picture dark: lens covered"


def test_box_resources(tmp_path: Path) -> None:
    box = resources(tmp_path)
    assert box.disk_total_bytes and box.disk_free_bytes is not None and box.disk_free_bytes <= box.disk_total_bytes
    rss, available = mem_rss(), mem_available()
    assert rss is not None and rss > 1_000_000
    assert available is None or available > 0
    assert resources(tmp_path / "gone").disk_total_bytes is None
