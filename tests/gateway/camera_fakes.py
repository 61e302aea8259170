"""Stand-ins for the camera pipeline and health monitor, driven by the test:
the real ones look at the pictures; these let a test say when someone
crosses, and how long the analysis of each frame takes."""

from __future__ import annotations

import threading
import time
from typing import Any

import cv2
import numpy as np

from devices.camera.crossing import Crossing, Direction
from devices.camera.health import HealthReport

JPEG = bytes(cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes())


class FakePipeline:
    """Reports a crossing on the next frame after :meth:`walk`; ``busy_s``
    of work per frame, in OpenCV (which lets the loop's thread run, as the
    real pipeline does) or in pure Python (``python_busy``: the worst case)."""

    def __init__(self, busy_s: float = 0.0, *, python_busy: bool = False, fail: Exception | None = None) -> None:
        self.busy_s = busy_s
        self.python_busy = python_busy
        self.fail = fail
        self.frames = 0
        self.finished = False
        self.shapes: list[tuple[int, ...]] = []
        self._walkers: list[Direction] = []
        self._lock = threading.Lock()
        self._track = 0
        self._work = np.random.default_rng(1).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)

    def walk(self, direction: Direction) -> None:
        with self._lock:
            self._walkers.append(direction)

    def process(self, frame: Any, t: float) -> list[Crossing]:
        if self.fail is not None:
            raise self.fail
        self.frames += 1
        self.shapes.append(frame.shape)
        self._burn()
        with self._lock:
            walkers, self._walkers = self._walkers, []
        crossings = []
        for direction in walkers:
            self._track += 1
            crossings.append(Crossing(t=t, direction=direction, track=self._track, box=(10, 10, 40, 80),
                                      snapshot=JPEG, confirmed=True))
        return crossings

    def finish(self) -> list[Crossing]:
        self.finished = True
        return [Crossing(t=999.0, direction="in", track=99, box=(0, 0, 10, 10), snapshot=None)]

    def _burn(self) -> None:
        deadline = time.monotonic() + self.busy_s
        while time.monotonic() < deadline:
            if self.python_busy:
                sum(i * i for i in range(2000))
            else:
                cv2.GaussianBlur(self._work, (31, 31), 0)


class FakePipelines:
    """A pipeline factory that remembers what it made (one per session)."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.made: list[FakePipeline] = []
        self.settings: list[Any] = []

    def __call__(self, settings: Any) -> FakePipeline:
        self.settings.append(settings)
        pipeline = FakePipeline(**self.kwargs)
        self.made.append(pipeline)
        return pipeline

    @property
    def current(self) -> FakePipeline:
        return self.made[-1]


class ScriptedHealth:
    """Reports the given state from the given frame on (then nothing)."""

    def __init__(self, script: dict[int, HealthReport]) -> None:
        self.script = script
        self.frames = 0

    def observe(self, frame: Any, t: float) -> HealthReport | None:
        self.frames += 1
        return self.script.get(self.frames)
