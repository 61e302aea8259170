"""Real recorded clips in tests/data/video and their hand-made ground truth.

Each ``<clip>.truth.json`` names its clip by its stem: the video is the one
file beside it with the same stem and a video suffix. The truth says, per door
line, every crossing of that line by a person (see tests/data/video/README.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from devices.camera.evaluate import match_times

VIDEO_DIR = Path(__file__).resolve().parents[2] / "data" / "video"
VIDEO_SUFFIXES = (".mpg", ".mp4", ".avi")
# Bounds on what a truth file may say, so a typo fails loudly instead of
# turning into a test that decodes for ever or matches nothing.
MAX_FRAMES = 3000
MAX_SIDE = 1920
MAX_TRUTH_BYTES = 200_000
MAX_CROSSINGS = 500

Direction = Literal["in", "out"]
INWARDS = ("up", "down", "left", "right")


class FootageError(Exception):
    """A truth file or clip is missing, malformed or disagrees with itself."""


@dataclass(frozen=True)
class TrueCrossing:
    t: float
    frame: int
    direction: Direction
    person: str


@dataclass(frozen=True)
class TruthLine:
    name: str
    line: tuple[float, float, float, float]
    inward: str
    crossings: tuple[TrueCrossing, ...]

    def count(self, direction: Direction) -> int:
        return sum(1 for c in self.crossings if c.direction == direction)


@dataclass(frozen=True)
class Clip:
    name: str
    path: Path
    source: str
    fps: float
    frames: int
    size: tuple[int, int]  # width, height
    lines: tuple[TruthLine, ...]
    notes: str

    def frames_bgr(self) -> Iterator[tuple[int, NDArray[np.uint8]]]:
        """Every frame in order with its index; raises if the clip does not
        decode to exactly ``frames`` frames of ``size``, since the truth's
        frame numbers would then point at the wrong pictures."""
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise FootageError(f"{self.path.name}: OpenCV cannot open it")
        index = 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if index >= self.frames:
                    raise FootageError(f"{self.path.name}: more than the {self.frames} frames its truth says")
                height, width = frame.shape[:2]
                if (width, height) != self.size:
                    raise FootageError(f"{self.path.name}: frame {index} is {width}x{height}, "
                                       f"truth says {self.size[0]}x{self.size[1]}")
                yield index, np.ascontiguousarray(frame, dtype=np.uint8)
                index += 1
        finally:
            cap.release()
        if index != self.frames:
            raise FootageError(f"{self.path.name}: decoded {index} frames, truth says {self.frames}")


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise FootageError(f"{where}: {what}")


def _number(value: Any, where: str, what: str) -> float:
    _need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
          where, f"{what} must be a finite number")
    return float(value)


def _text(value: Any, where: str, what: str, limit: int) -> str:
    _need(isinstance(value, str) and 0 < len(value) <= limit, where, f"{what} must be text of 1-{limit} characters")
    return str(value)


def _crossing(raw: Any, where: str, fps: float, frames: int) -> TrueCrossing:
    _need(isinstance(raw, dict), where, "a crossing must be an object")
    frame = raw.get("frame")
    _need(isinstance(frame, int) and not isinstance(frame, bool) and 0 <= frame < frames,
          where, f"frame must be an integer in 0..{frames - 1}")
    t = _number(raw.get("t"), where, "t")
    # t is written out for readers; the frame is what was annotated.
    _need(abs(t - frame / fps) <= 0.5 / fps, where, f"t {t} does not match frame {frame} at {fps} fps")
    direction = raw.get("direction")
    _need(direction in ("in", "out"), where, "direction must be \"in\" or \"out\"")
    person = _text(raw.get("person"), where, "person", 200)
    return TrueCrossing(t=t, frame=frame, direction="in" if direction == "in" else "out", person=person)


def _line(raw: Any, where: str, fps: float, frames: int, size: tuple[int, int]) -> TruthLine:
    _need(isinstance(raw, dict), where, "a line must be an object")
    name = _text(raw.get("name", "line"), where, "name", 60)
    coords = raw.get("line")
    _need(isinstance(coords, list) and len(coords) == 4, where, "line must be [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (_number(v, where, "a line coordinate") for v in coords)
    for x, y in ((x1, y1), (x2, y2)):
        _need(0 <= x <= size[0] and 0 <= y <= size[1], where, f"line point ({x:g}, {y:g}) is outside the picture")
    inward = raw.get("inward")
    _need(inward in INWARDS, where, f"inward must be one of {', '.join(INWARDS)}")
    crossings = raw.get("crossings")
    _need(isinstance(crossings, list) and len(crossings) <= MAX_CROSSINGS, where,
          f"crossings must be a list of at most {MAX_CROSSINGS}")
    parsed = tuple(_crossing(c, f"{where} crossing {i}", fps, frames) for i, c in enumerate(crossings))
    _need(all(a.frame <= b.frame for a, b in zip(parsed, parsed[1:])), where, "crossings must be in time order")
    return TruthLine(name=name, line=(x1, y1, x2, y2), inward=str(inward), crossings=parsed)


def load_clip(truth_path: Path) -> Clip:
    where = truth_path.name
    _need(truth_path.stat().st_size <= MAX_TRUTH_BYTES, where, f"larger than {MAX_TRUTH_BYTES} bytes")
    try:
        raw = json.loads(truth_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FootageError(f"{where}: not JSON: {e}") from None
    _need(isinstance(raw, dict), where, "must be a JSON object")
    stem = truth_path.name.removesuffix(".truth.json")
    videos = [truth_path.with_name(stem + s) for s in VIDEO_SUFFIXES if truth_path.with_name(stem + s).is_file()]
    _need(len(videos) == 1, where, f"needs exactly one video named {stem}{{{','.join(VIDEO_SUFFIXES)}}} beside it")
    fps = _number(raw.get("fps"), where, "fps")
    _need(1 <= fps <= 60, where, "fps must be 1-60")
    frames = raw.get("frames")
    _need(isinstance(frames, int) and not isinstance(frames, bool) and 1 <= frames <= MAX_FRAMES,
          where, f"frames must be an integer in 1..{MAX_FRAMES}")
    size = raw.get("size")
    _need(isinstance(size, list) and len(size) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= MAX_SIDE for v in size),
          where, f"size must be [width, height] in 16..{MAX_SIDE}")
    lines = raw.get("lines")
    _need(isinstance(lines, list) and 1 <= len(lines) <= 8, where, "lines must be a list of 1-8 lines")
    wh = (int(size[0]), int(size[1]))
    return Clip(
        name=stem, path=videos[0], source=_text(raw.get("source"), where, "source", 400),
        fps=fps, frames=frames, size=wh,
        lines=tuple(_line(line, f"{where} line {i}", fps, frames, wh) for i, line in enumerate(lines)),
        notes=_text(raw.get("notes"), where, "notes", 2000))


def load_clips(directory: Path = VIDEO_DIR) -> list[Clip]:
    clips = [load_clip(p) for p in sorted(directory.glob("*.truth.json"))]
    if not clips:
        raise FootageError(f"no *.truth.json in {directory}")
    return clips


def matched(counted: Sequence[float], truth: Sequence[float], window: float = 1.0) -> int:
    """How many counted times pair one-to-one with true times no more than
    ``window`` seconds apart (the scoring the benchmark uses)."""
    return len(match_times(counted, truth, window))
