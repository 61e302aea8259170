"""Videos written through OpenCV read back frame for frame, with the truth
beside them; the command line does the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from firmware_sim.camera.errors import CameraSimError
from firmware_sim.camera.render import render
from firmware_sim.camera.script import random_script, truth
from firmware_sim.camera.video import truth_path, write_video


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_a_video_reads_back_with_every_frame_at_its_size(tmp_path: Path, suffix: str) -> None:
    script = random_script(3, 8, width=320, height=240)
    path = tmp_path / f"door{suffix}"
    result = write_video(path, script, 10)
    assert result["frames"] == 80
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 80 and frames[0].shape == (240, 320, 3)
    # The frames are the rendered ones, up to compression.
    rendered = [f for _, f in render(script, 10)]
    assert np.abs(frames[40].astype(int) - rendered[40].astype(int)).mean() < 8
    assert not list(tmp_path.glob(".*partial*"))


def test_the_truth_file_holds_the_line_the_crossings_and_the_grants(tmp_path: Path) -> None:
    script = random_script(9, 60, width=320, height=240)
    path = tmp_path / "door.avi"
    write_video(path, script, 5)
    sidecar = json.loads(truth_path(path).read_text())
    assert truth_path(path).name == "door.avi.truth.json"
    assert sidecar["line"] == {"x1": 80.0, "y1": 120.0, "x2": 240.0, "y2": 120.0, "inward": "down"}
    assert sidecar["frames"] == 300 and sidecar["fps"] == 5
    assert [c["t"] for c in sidecar["crossings"]] == [round(c.t, 3) for c in truth(script)]
    assert len(sidecar["grants"]) == len(script.grants) > 0
    assert sidecar["counts"]["in"] == sum(1 for c in sidecar["crossings"] if c["direction"] == "in")


def test_an_unknown_container_or_a_missing_folder_is_refused(tmp_path: Path) -> None:
    script = random_script(1, 2, width=320, height=240)
    with pytest.raises(CameraSimError, match=".avi or .mp4"):
        write_video(tmp_path / "door.mkv", script, 10)
    with pytest.raises(CameraSimError, match="no folder"):
        write_video(tmp_path / "nowhere" / "door.avi", script, 10)


def test_the_command_writes_a_video_and_prints_one_json_object(tmp_path: Path) -> None:
    path = tmp_path / "door.mp4"
    done = subprocess.run([sys.executable, "-m", "rentgate", "--lang", "en", "sim", "camera", "write", str(path),
                           "--seed", "4", "--duration", "6", "--fps", "5", "--size", "320x240", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["frames"] == 30 and Path(result["truth"]).exists() and path.stat().st_size > 0
    assert "wrote 30 frames" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "rentgate", "sim", "camera", "write", str(path), "--size", "big",
                          "--json"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "WIDTHxHEIGHT" in json.loads(bad.stdout.strip().splitlines()[-1])["error"]
