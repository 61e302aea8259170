"""The cheap stage, run on every frame: what moves, found on a small copy of
the picture.

A person at a door covers a few percent of the picture, so a copy 200
pixels high keeps them at 20 or more pixels (people 35 px tall in a 288 px
recording still show legs) while costing about a millisecond (DEVICES.md: the way to run many cameras on one CPU). The
background is OpenCV's MOG2 mixture model, which follows slow changes of
light by itself and marks shadows, which are dropped (a shadow on the floor
beside a person would otherwise make them look twice as wide).

Two things a running-average model gets wrong are handled here:
- a change of the light's overall level (a lamp switched on, a cloud) is
  taken out first by scaling each frame to the background's brightness;
- when most of the picture changes at once anyway (a light switched off,
  the camera knocked), the model is rebuilt from that frame rather than
  reporting one huge moving region for seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from devices.camera.errors import CameraConfigError

Frame = NDArray[np.uint8]
Box = tuple[int, int, int, int]  # x, y, w, h in source pixels

# Share of the small picture that may change at once before the change is
# taken for the light or the view rather than for people.
GLOBAL_CHANGE = 0.45


@dataclass(frozen=True)
class MotionSettings:
    height: int = 200
    # A region smaller than this share of the picture is noise, not a person.
    min_area: float = 0.002
    # MOG2: frames of history (at 10 fps, 30 s) and the squared distance
    # that counts as foreground.
    history: int = 1000
    var_threshold: float = 16
    # The share a new look gets of the model per frame. Fixed, not MOG2's
    # default of 1/frames-so-far, which early on learns so fast that the
    # inside of a plain coat sliding over itself turns into background within
    # a second. At 0.001 and 10 frames a second someone standing still stays
    # foreground for about 10 s; slow changes of light are handled by the
    # brightness scaling, sudden ones by rebuilding the model.
    learning_rate: float = 0.001
    # After the start and after every rebuild, the model learns fast for
    # this many frames, so that people in the first picture (which becomes
    # the background) leave no ghost behind them once they walk on.
    warmup_frames: int = 20
    warmup_rate: float = 0.05


class MotionStage:
    """Feed every frame in order; :meth:`regions` returns the moving boxes."""

    def __init__(self, width: int, height: int, settings: MotionSettings | None = None) -> None:
        if width <= 0 or height <= 0:
            raise CameraConfigError(f"a picture of {width}x{height} pixels cannot be analysed")
        self.settings = settings or MotionSettings()
        self.width, self.height = width, height
        small_h = min(self.settings.height, height)
        self.scale = small_h / height
        self.small_size = (max(1, round(width * self.scale)), small_h)
        self._model = self._new_model()
        self._level: float | None = None
        self._kernel_open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._kernel_close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 7))
        self.mask: NDArray[np.uint8] | None = None
        self.resets = 0
        self.frames = 0
        self._built_at = 0

    def _new_model(self) -> cv2.BackgroundSubtractorMOG2:
        model = cv2.createBackgroundSubtractorMOG2(history=self.settings.history,
                                                   varThreshold=self.settings.var_threshold, detectShadows=True)
        model.setShadowThreshold(0.6)
        return model

    def small_copy(self, frame: Frame) -> NDArray[np.uint8]:
        """The downscaled, slightly blurred frame the model sees. In colour:
        on grey alone, MOG2's shadow test takes anyone in clothes darker than
        the floor for a shadow (it checks only that a pixel is a darker
        version of the background, and in grey every darker pixel is)."""
        small = cv2.resize(frame, self.small_size, interpolation=cv2.INTER_AREA)
        return np.asarray(cv2.GaussianBlur(small, (3, 3), 0), dtype=np.uint8)

    def regions(self, frame: Frame) -> list[Box]:
        small = self.small_copy(frame)
        level = float(np.median(small[::4, ::4]))
        if self._level is None:
            self._level = max(level, 1.0)
        elif level > 8:
            # Bring the frame to the background's brightness before comparing.
            gain = self._level / level
            # The model holds pictures at the brightness it was built at, so
            # that reference stays put: every frame is brought to it.
            if abs(gain - 1) > 0.03:
                small = np.asarray(cv2.convertScaleAbs(small, alpha=gain), dtype=np.uint8)
        since = self.frames - self._built_at
        self.frames += 1
        rate = 1.0 if since == 0 else self.settings.warmup_rate if since < self.settings.warmup_frames \
            else self.settings.learning_rate
        raw = self._model.apply(small, learningRate=rate)
        # 255 is foreground, 127 a shadow: keep only the first.
        _, fg = cv2.threshold(raw, 200, 255, cv2.THRESH_BINARY)
        if cv2.countNonZero(fg) > GLOBAL_CHANGE * fg.size:
            self._model = self._new_model()
            self._model.apply(small, learningRate=1.0)
            self._built_at = self.frames
            self._level = max(level, 1.0)
            self.resets += 1
            self.mask = np.zeros(fg.shape, np.uint8)
            return []
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self._kernel_open)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self._kernel_close, iterations=2)
        self.mask = np.asarray(fg, dtype=np.uint8)
        contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_area = self.settings.min_area * fg.size
        inv = 1.0 / self.scale
        boxes: list[Box] = []
        for contour in contours:
            if cv2.contourArea(contour) < min_area:
                continue
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append((int(x * inv), int(y * inv), max(1, int(round(w * inv))), max(1, int(round(h * inv)))))
        return join_parts(boxes)


def join_parts(boxes: list[Box]) -> list[Box]:
    """Join pieces of one person: a head, a coat and legs that the mask
    shows apart (parts that look like the background in between) lie above
    one another, overlap sideways and are close. People side by side do
    not overlap sideways enough to be joined."""
    out = sorted(boxes, key=lambda b: b[1])
    joined = True
    while joined:
        joined = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                over = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
                gap = max(a[1], b[1]) - min(a[1] + a[3], b[1] + b[3])
                if over >= 0.6 * min(a[2], b[2]) and gap <= 0.35 * max(a[3], b[3]):
                    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
                    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
                    out[i] = (x0, y0, x1 - x0, y1 - y0)
                    del out[j]
                    joined = True
                    break
            if joined:
                break
    return out
