"""Running the pipeline over a recording, as fast as the CPU allows: the
``rentgate camera count`` command, the benchmark and the tests all use this,
so that what they measure is what a gateway runs."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from devices.camera.crossing import Crossing
from devices.camera.errors import BadFrame, SourceError
from devices.camera.pipeline import CameraPipeline, PipelineSettings

# A file that claims an absurd frame rate (some containers say 1000 or 0)
# is read at this rate instead.
FALLBACK_FPS = 25.0


@dataclass
class RecordingResult:
    path: str
    fps: float
    size: tuple[int, int]
    frames_read: int = 0
    frames_analysed: int = 0
    bad_frames: int = 0
    person_runs: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    crossings: list[Crossing] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, int]:
        return {"in": sum(1 for c in self.crossings if c.direction == "in"),
                "out": sum(1 for c in self.crossings if c.direction == "out")}


def open_video(path: str | Path) -> tuple[cv2.VideoCapture, float, tuple[int, int]]:
    """Open a video file; SourceError says why not in words a person can act on."""
    text = str(path)
    if not os.path.exists(text):
        raise SourceError(text, "no such file")
    if os.path.isdir(text):
        raise SourceError(text, "is a folder, not a video file")
    capture = cv2.VideoCapture(text)
    if not capture.isOpened():
        raise SourceError(text, "cannot be read as a video (not a video file, or a format this OpenCV cannot decode)")
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0)
    if not (math.isfinite(fps) and 1 <= fps <= 240):
        fps = FALLBACK_FPS
    ok, frame = capture.read()
    if not ok or frame is None:
        capture.release()
        raise SourceError(text, "holds no picture that can be decoded")
    size = (int(frame.shape[1]), int(frame.shape[0]))
    # Opened again rather than seeking back: seeking in MPEG-1 and some other
    # streams lands on the nearest key frame and silently skips frames.
    capture.release()
    capture = cv2.VideoCapture(text)
    return capture, fps, size


def count_recording(path: str | Path, settings: PipelineSettings, *, max_fps: float | None = None,
                    on_crossing: Callable[[Crossing], None] | None = None) -> RecordingResult:
    """Every crossing in the file. Times are the frame's position in the
    recording (frame number / frame rate). ``max_fps`` analyses at most that
    many frames per second of video, as a gateway set to that rate would."""
    capture, fps, size = open_video(path)
    settings.line.check_fits(*size)
    result = RecordingResult(str(path), fps, size)
    pipeline = CameraPipeline(settings)
    step = 1.0 / max_fps if max_fps else 0.0
    next_t = 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        index = -1
        while True:
            ok = capture.grab()
            if not ok:
                break
            index += 1
            t = index / fps
            result.frames_read += 1
            if step and t + 1e-9 < next_t:
                continue  # not decoded: the rate is kept without the cost
            next_t = max(next_t + step, t) if step else t
            ok, frame = capture.retrieve()
            if not ok or frame is None:
                result.bad_frames += 1
                continue
            try:
                found = pipeline.process(np.asarray(frame, dtype=np.uint8), t)
            except BadFrame:
                result.bad_frames += 1
                continue
            result.frames_analysed += 1
            for crossing in found:
                result.crossings.append(crossing)
                if on_crossing is not None:
                    on_crossing(crossing)
        for crossing in pipeline.finish():
            result.crossings.append(crossing)
            if on_crossing is not None:
                on_crossing(crossing)
    finally:
        capture.release()
    result.cpu_s = time.process_time() - cpu0
    result.wall_s = time.perf_counter() - wall0
    result.person_runs = pipeline.person_runs
    return result
