"""``rentgate camera count`` on a recording, as a newcomer runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_sim.camera.script import random_script
from firmware_sim.camera.video import write_video


def _rentgate(*args: str, lang: str = "en") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rentgate", "--lang", lang, "camera", "count", *args],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def doorway(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    path = tmp_path_factory.mktemp("video") / "doorway.avi"
    script = random_script(21, 50, {"alone_in": 2, "alone_out": 1}, lighting=False, noise=True, distractors=False)
    truth = write_video(path, script, 10)
    return path, truth


def test_every_crossing_and_the_totals_as_json(doorway: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    path, truth = doorway
    line = truth["line"]
    assert isinstance(line, dict)
    shots = tmp_path / "shots"
    proc = _rentgate("--video", str(path), "--line", f"{line['x1']},{line['y1']},{line['x2']},{line['y2']}",
                     "--in", str(line["inward"]), "--snapshots", str(shots), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    crossings = truth["crossings"]
    assert isinstance(crossings, list)
    true_in = sum(1 for c in crossings if c["direction"] == "in")
    true_out = len(crossings) - true_in
    assert result["totals"] == {"in": true_in, "out": true_out}, (result, crossings)
    assert [c["direction"] for c in result["crossings"]] == [c["direction"] for c in crossings]
    for counted, real in zip(result["crossings"], crossings, strict=True):
        assert abs(counted["t"] - real["t"]) <= 1.0
    assert result["frames_analysed"] == result["frames_read"] == 500
    assert len(list(shots.glob("*.jpg"))) == len(crossings)


def test_the_text_is_for_people(doorway: tuple[Path, dict[str, object]]) -> None:
    path, truth = doorway
    line = truth["line"]
    assert isinstance(line, dict)
    proc = _rentgate("--video", str(path), "--line", f"{line['x1']},{line['y1']},{line['x2']},{line['y2']}",
                     lang="zh")
    assert proc.returncode == 0, proc.stderr
    assert "合计：进" in proc.stdout and "00:" in proc.stdout


@pytest.mark.parametrize(("args", "words"), [
    (["--video", "/no/such/file.mp4", "--line", "0,10,100,10"], "no such file"),
    (["--video", "{folder}", "--line", "0,10,100,10"], "is a folder"),
    (["--video", "{text}", "--line", "0,10,100,10"], "cannot be read as a video"),
    (["--video", "{video}", "--line", "0,10,9000,10"], "outside the 640x480 picture"),
    (["--video", "{video}", "--line", "0,10,100"], "four numbers"),
    (["--video", "{video}", "--line", "0,10,100,10", "--in", "left"], "runs along the door line"),
    (["--video", "{video}", "--line", "0,10,100,10", "--detector", "nope.nothing:make"], "cannot be loaded"),
    (["--video", "{video}", "--line", "0,10,100,10", "--fps", "0"], "--fps"),
    (["--video", "{video}", "--line", "0,10,100,10", "--snapshots", "{full}"], "not an empty folder"),
])
def test_what_cannot_work_says_what_to_do(doorway: tuple[Path, dict[str, object]], tmp_path: Path, args: list[str],
                                          words: str) -> None:
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.jpg").write_bytes(b"mine")
    filled = [a.format(folder=tmp_path, text=tmp_path / "notes.txt", video=doorway[0], full=tmp_path / "full")
              for a in args]
    proc = _rentgate(*filled)
    assert proc.returncode == 2
    assert words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "full" / "keep.jpg").read_bytes() == b"mine"
