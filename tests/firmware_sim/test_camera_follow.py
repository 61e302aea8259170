"""The camera walks people in after the swipes a building logs: one after a
granted swipe at its door, sometimes a tailgater; nobody after a refused
swipe or a swipe at another door."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from firmware_sim.camera.follow import Follower, FollowMix
from firmware_sim.camera.live import LiveScene
from firmware_sim.swipe_log import SwipeLog, follow

DOOR = "正门"


def _line(door: str = DOOR, granted: bool = True, ts: datetime | None = None) -> dict[str, Any]:
    return {"ts": (ts or datetime.now(UTC)).isoformat(), "door": door, "card": "90:324", "granted": granted}


def test_follow_sees_lines_appended_after_it_started_even_if_the_file_came_later(tmp_path: Path) -> None:
    path = tmp_path / "swipes.jsonl"
    stop = threading.Event()
    seen: list[dict[str, Any] | None] = []
    got = threading.Condition()
    ready = threading.Event()

    def tail() -> None:
        for record in follow(path, stop, poll_s=0.02, ready=ready):
            with got:
                seen.append(record)
                got.notify_all()

    thread = threading.Thread(target=tail, daemon=True)
    thread.start()
    try:
        assert ready.wait(5)
        log = SwipeLog(path)
        log.write(DOOR, "90:324", True)
        with open(path, "a") as f:
            f.write("not json\n" + "x" * 10_000 + "\n")
        log.write("后门", "90:325", False)
        with got:
            assert got.wait_for(lambda: len(seen) == 4, 5)
        assert seen[0] is not None and seen[0]["door"] == DOOR and seen[0]["granted"] is True
        assert seen[1] is None and seen[2] is None
        assert seen[3] is not None and seen[3]["card"] == "90:325"
        # Cut short (a new run of the building): read again from the start.
        log.close()
        path.write_text(json.dumps(_line()) + "\n")
        with got:
            assert got.wait_for(lambda: len(seen) == 5, 5)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_a_granted_swipe_walks_someone_in_and_a_refused_one_nobody() -> None:
    scene = LiveScene(width=320, height=240)
    follower = Follower(scene, "unused", DOOR, mix=FollowMix(tailgate=0, unidentified=0, outward=0))
    now = datetime.now(UTC)
    follower.handle(_line(ts=now))
    follower.handle(_line(granted=False))
    follower.handle(_line(door="后门"))
    follower.handle({"door": DOOR, "granted": True, "ts": "yesterday"})
    follower.handle(None)
    assert follower.stats()["followed"] == 1 and follower.stats()["refused"] == 1
    assert follower.stats()["other_doors"] == 1 and follower.stats()["bad_lines"] == 2
    stats = scene.stats()
    assert stats["people"] == 1 and stats["grants"] == 1
    # The person reaches the door line 1.5 to 3.5 s after the swipe.
    [planned] = list(scene._crossings)
    assert 1.5 <= planned.ts - now.timestamp() <= 3.5 + 0.1
    assert planned.outcome == "matched"


def test_the_mix_brings_tailgaters_and_unidentified_people() -> None:
    scene = LiveScene(width=320, height=240)
    follower = Follower(scene, "unused", DOOR, mix=FollowMix(tailgate=1, unidentified=0, outward=0))
    follower.handle(_line(ts=datetime.now(UTC) - timedelta(seconds=1)))
    outcomes = [c.outcome for c in scene._crossings]
    assert outcomes == ["matched", "tailgating"] and follower.stats()["tailgaters"] == 1


def test_serve_follow_walks_people_after_swipes(tmp_path: Path) -> None:
    log_path = tmp_path / "swipes.jsonl"
    log_path.touch()
    env = {**os.environ, "RENTGATE_LANG": "en"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rentgate", "sim", "camera", "serve", "--port", "0", "--fps", "10", "--size",
         "320x240", "--follow", str(log_path), "--door", DOOR, "--tailgate", "0", "--unidentified", "0",
         "--outward", "0", "--duration", "30", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline().decode()
        assert first.startswith("camera: http://127.0.0.1:"), first
        url = first.split(": ", 1)[1].strip()
        base = url.rsplit("/", 1)[0]
        log = SwipeLog(log_path)
        log.write(DOOR, "90:324", True)
        log.write(DOOR, "90:325", False)
        log.write("后门", "90:326", True)
        log.close()
        deadline = time.monotonic() + 15
        crossed: dict[str, int] = {}
        while time.monotonic() < deadline:
            with urllib.request.urlopen(base + "/stats", timeout=5) as resp:
                crossed = json.loads(resp.read())["scene"]["crossed"]
            if crossed["in"]:
                break
            time.sleep(0.2)
        assert crossed == {"in": 1, "out": 0, "matched": 1, "tailgating": 0, "unidentified": 0}
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["follow"]["followed"] == 1 and result["follow"]["refused"] == 1
    assert result["follow"]["other_doors"] == 1


def test_the_em4100_building_logs_its_swipes(tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'name = "t"\n[[doors]]\nid = "door-a"\nlink = "{tmp_path / "door-a"}"\n'
                   "[tenants]\ncount = 3\n"
                   '[swipes]\npattern = "burst"\ntotal = 3\nrepeats = 1\n')
    log_path = tmp_path / "swipes.jsonl"
    done = subprocess.run([sys.executable, "-m", "rentgate", "sim", "building", "--config", str(cfg),
                           "--swipe-log", str(log_path), "--json"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout.decode().strip().splitlines()[-1])
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert len(lines) == stats["swipes"] == 3
    assert [(x["door"], x["card"]) for x in lines if x["granted"]] == [tuple(r) for r in stats["expected_reads"]]
    assert all(datetime.fromisoformat(x["ts"]).tzinfo is not None for x in lines)
