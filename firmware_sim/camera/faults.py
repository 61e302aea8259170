"""What can go wrong with a camera, switched on for a while: the picture
freezes, goes black (covered), shifts (the camera was knocked), parts of
the stream are corrupt JPEG, or the camera vanishes from the network."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from firmware_sim.camera.errors import CameraSimError
from firmware_sim.camera.render import Frame

FAULTS: tuple[str, ...] = ("vanish", "freeze", "black", "shift", "corrupt")
MAX_FAULT_S = 3600.0
_DARK = np.random.default_rng(0)


def parse_fault(text: str) -> tuple[str, float, float]:
    """``KIND:AT:SECONDS`` as given on the command line."""
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in FAULTS:
        raise CameraSimError(f"a fault is KIND:AT:SECONDS with KIND one of {', '.join(FAULTS)}; got {text[:40]!r}")
    try:
        at, seconds = float(parts[1]), float(parts[2])
    except ValueError:
        raise CameraSimError(f"a fault's AT and SECONDS are numbers; got {text[:40]!r}") from None
    check_fault(parts[0], seconds)
    if not (math.isfinite(at) and at >= 0):
        raise CameraSimError("a fault's AT is seconds from the start, >= 0")
    return parts[0], at, seconds


def check_fault(kind: str, seconds: float) -> None:
    if kind not in FAULTS:
        raise CameraSimError(f"unknown fault {kind[:20]!r}; known: {', '.join(FAULTS)}")
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_FAULT_S):
        raise CameraSimError(f"a fault lasts 0 to {MAX_FAULT_S:g} s")


class Faults:
    """Which faults are on until when (monotonic clock). ``corrupt`` for 0 s
    corrupts exactly the next part."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        self._one_corrupt = False
        self._rng = random.Random(0)
        self.counts = dict.fromkeys(FAULTS, 0)

    def switch_on(self, kind: str, seconds: float) -> None:
        check_fault(kind, seconds)
        with self._lock:
            self.counts[kind] += 1
            if kind == "corrupt" and seconds == 0:
                self._one_corrupt = True
            else:
                self._until[kind] = max(self._until.get(kind, 0.0), self._clock() + seconds)

    def on(self, kind: str) -> bool:
        with self._lock:
            return self._until.get(kind, 0.0) > self._clock()

    def until(self, kind: str) -> float:
        with self._lock:
            return self._until.get(kind, 0.0)

    def take_corrupt(self) -> bool:
        """Whether the next part must be corrupt (and counts it as sent)."""
        with self._lock:
            if self._one_corrupt:
                self._one_corrupt = False
                return True
            return self._until.get("corrupt", 0.0) > self._clock()

    def active(self) -> list[str]:
        now = self._clock()
        with self._lock:
            return sorted(k for k, until in self._until.items() if until > now)

    def garbage(self, jpeg: bytes) -> bytes:
        """A part that starts and ends like a JPEG and decodes to nothing."""
        with self._lock:
            body = bytes(self._rng.getrandbits(8) for _ in range(max(64, len(jpeg) // 4)))
        return b"\xff\xd8" + body.replace(b"\xff", b"\x00") + b"\xff\xd9"


def covered(frame: Frame) -> Frame:
    """A hand or a bag over the lens: almost black, with the sensor's noise."""
    return _DARK.integers(0, 10, frame.shape, dtype=np.uint8)


def knocked(frame: Frame) -> Frame:
    """The camera turned a little: the view moves by about a tenth of the
    picture and tilts by a few degrees."""
    h, w = frame.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 4.0, 1.0)
    m[0, 2] += 0.1 * w
    m[1, 2] += 0.07 * h
    return np.asarray(cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REPLICATE), np.uint8)
