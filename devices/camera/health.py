"""A camera's health from its pictures: frozen, dark or covered, moved.

Each is judged on a 64x48 grey thumbnail, so watching costs next to
nothing beside the analysis:
- frozen: the picture has not changed at all for ``frozen_s`` (a real sensor
  always has some noise; a stalled encoder or a stream that repeats its last
  frame does not);
- dark: nearly black, or one flat colour (a lens covered by a hand, tape or
  a bag) for ``dark_s``;
- moved: the scene no longer lines up with the reference view taken once the
  camera had been well for a while, judged by phase correlation (which a
  person walking through or a change of light barely moves) for ``moved_s``.
  The reference is kept until the camera is set up again (the door line is
  drawn on that view: after a move it is probably wrong), so a moved camera
  stays "moved".
Which comes first: dark, then frozen, then moved (a black picture is also
unchanging and unlike the reference; the first cause is the one to report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

HealthState = Literal["ok", "frozen", "dark", "moved"]
_THUMB = (64, 48)
# Mean absolute change per pixel below which two thumbnails are the same picture.
_SAME = 0.08
_DARK_MEAN = 22.0
_FLAT_STD = 5.0
# A shift of the whole view by more than this share of the width, or a match
# weaker than _WEAK, is a moved camera.
_SHIFT = 0.06
_WEAK = 0.08
_REFERENCE_AFTER_S = 3.0


@dataclass(frozen=True)
class HealthReport:
    state: HealthState
    # One line in English for logs and the device_status event's detail.
    detail: str


_DETAIL: dict[HealthState, str] = {
    "ok": "picture ok",
    "frozen": "picture frozen: the camera sends the same frame over and over",
    "dark": "picture black or flat: lens covered, no light, or the camera is failing",
    "moved": "view moved: the camera points elsewhere than when it was set up; check it and its door line",
}


class HealthMonitor:
    """Call :meth:`observe` with every analysed frame; it returns a report
    only when the state changes (the first frame reports "ok")."""

    def __init__(self, *, frozen_s: float = 10.0, dark_s: float = 5.0, moved_s: float = 10.0) -> None:
        for name, value in (("frozen_s", frozen_s), ("dark_s", dark_s), ("moved_s", moved_s)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a number of seconds above 0")
        self.frozen_s, self.dark_s, self.moved_s = frozen_s, dark_s, moved_s
        self.state: HealthState | None = None
        self._previous: NDArray[np.float32] | None = None
        self._since: dict[HealthState, float | None] = {"frozen": None, "dark": None, "moved": None}
        self._reference: NDArray[np.float32] | None = None
        self._window: NDArray[np.float32] | None = None
        self._ok_since: float | None = None
        self.shift = (0.0, 0.0)
        self.match = 1.0

    def observe(self, frame: NDArray[np.uint8], t: float) -> HealthReport | None:
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        thumb = cv2.resize(grey, _THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
        mean, std = cv2.meanStdDev(thumb)
        dark = float(mean[0][0]) < _DARK_MEAN or float(std[0][0]) < _FLAT_STD
        same = self._previous is not None and float(np.mean(np.abs(thumb - self._previous))) < _SAME
        self._previous = thumb
        moved = not dark and not same and self._moved(thumb)
        seen = {"dark": dark, "frozen": same and not dark, "moved": moved}
        for name, now in seen.items():
            key: HealthState = name  # type: ignore[assignment]
            if not now:
                self._since[key] = None
            elif self._since[key] is None:
                self._since[key] = t
        state: HealthState = "ok"
        for name, limit in (("dark", self.dark_s), ("frozen", self.frozen_s), ("moved", self.moved_s)):
            key = name  # type: ignore[assignment]
            started = self._since[key]
            if started is not None and t - started >= limit:
                state = key
                break
        if state == "ok" and not any(seen.values()):
            if self._ok_since is None:
                self._ok_since = t
            if self._reference is None and t - self._ok_since >= _REFERENCE_AFTER_S:
                self._reference = thumb.copy()
        else:
            self._ok_since = None
        if state == self.state:
            return None
        self.state = state
        return HealthReport(state, _DETAIL[state])

    def _moved(self, thumb: NDArray[np.float32]) -> bool:
        if self._reference is None:
            return False
        if self._window is None:
            self._window = np.asarray(cv2.createHanningWindow(_THUMB, cv2.CV_32F), dtype=np.float32)
        a = thumb - float(thumb.mean())
        b = self._reference - float(self._reference.mean())
        (dx, dy), response = cv2.phaseCorrelate(b, a, self._window)
        self.shift, self.match = (dx, dy), float(response)
        return math.hypot(dx / _THUMB[0], dy / _THUMB[1]) > _SHIFT or response < _WEAK

    def reset_reference(self) -> None:
        """Take a new reference view (after the camera was set up again)."""
        self._reference = None
        self._ok_since = None
