"""The person stage: is what moves a person, and how many are there?

It runs only on the regions the motion stage found, and only a few times a
second (PipelineSettings.person_fps), because it costs a hundred times more
than motion. Behind one small interface so that a better model can be
plugged in by configuration (``detector = "package.module:factory"``): a
factory takes no arguments and returns a :class:`Detector`.

The built-in choice is OpenCV's HOG people detector (Dalal and Triggs),
which OpenCV 4.x wheels ship inside the wheel: nothing is downloaded, no GPU
is needed. OpenCV 5.x dropped it, which is why opencv-python-headless is
pinned below 5 (docs/dependencies.md). It finds upright people seen from
the side or the front at 60 pixels high and more; it does not find people
seen from straight above, so the pipeline never *requires* its verdict to
count (docs/cameras.md says which scenes suit which detector).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from devices.camera.errors import CameraConfigError

Frame = NDArray[np.uint8]
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float


class Detector(Protocol):
    def detect(self, frame: Frame, regions: list[Box]) -> list[Detection]:
        """People inside ``regions`` (source pixels) of ``frame``."""


class NoDetector:
    """``detector = "motion"``: no person stage; moving blobs of a person's
    size are counted as they are (the right choice for cameras looking
    straight down, where no upright-person detector works)."""

    def detect(self, frame: Frame, regions: list[Box]) -> list[Detection]:
        return []


def _expand(box: Box, frame_w: int, frame_h: int, margin: float) -> Box:
    x, y, w, h = box
    mx, my = int(w * margin) + 8, int(h * margin) + 8
    x0, y0 = max(0, x - mx), max(0, y - my)
    x1, y1 = min(frame_w, x + w + mx), min(frame_h, y + h + my)
    return (x0, y0, x1 - x0, y1 - y0)


def _merge(boxes: list[Box]) -> list[Box]:
    """Union overlapping boxes so that no part of the picture is searched twice."""
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        out: list[Box] = []
        for box in merged:
            for i, other in enumerate(out):
                if (box[0] < other[0] + other[2] and other[0] < box[0] + box[2]
                        and box[1] < other[1] + other[3] and other[1] < box[1] + box[3]):
                    x0, y0 = min(box[0], other[0]), min(box[1], other[1])
                    x1 = max(box[0] + box[2], other[0] + other[2])
                    y1 = max(box[1] + box[3], other[1] + other[3])
                    out[i] = (x0, y0, x1 - x0, y1 - y0)
                    changed = True
                    break
            else:
                out.append(box)
        merged = out
    return merged


def non_max_suppression(detections: list[Detection], overlap: float = 0.45) -> list[Detection]:
    """Keep the best of boxes that cover the same person (by intersection
    over the smaller box, which also drops a box inside a bigger one)."""
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: -d.score):
        x, y, w, h = det.box
        if all(_inter(det.box, k.box) <= overlap * min(w * h, k.box[2] * k.box[3]) for k in kept):
            kept.append(det)
    return kept


def _inter(a: Box, b: Box) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return float(w * h) if w > 0 and h > 0 else 0.0


class HogDetector:
    """OpenCV's default HOG people detector on each moving region.

    A region is cut out with a margin and scaled so that a person filling
    its height is about 160 pixels high (the detector's window is 64x128
    with a border), never more: a large region costs no more than a small
    one. ``min_score`` is the SVM margin below which a window is not a
    person (0 is the detector's own boundary; a little above it trades a
    few misses for far fewer walls and door frames taken for people)."""

    WINDOW_H = 128
    TARGET_H = 240

    def __init__(self, min_score: float = 0.3) -> None:
        self._hog = cv2.HOGDescriptor()
        # The stubs of OpenCV 4.x do not list this function.
        people = cv2.HOGDescriptor_getDefaultPeopleDetector()  # type: ignore[attr-defined]
        self._hog.setSVMDetector(people)
        self.min_score = min_score

    def detect(self, frame: Frame, regions: list[Box]) -> list[Detection]:
        fh, fw = frame.shape[:2]
        found: list[Detection] = []
        for region in _merge([_expand(r, fw, fh, 0.15) for r in regions]):
            x, y, w, h = region
            if w < 16 or h < 32:
                continue
            factor = self.TARGET_H / h
            size = (max(72, int(w * factor)), max(self.WINDOW_H + 16, int(h * factor)))
            crop = cv2.resize(frame[y:y + h, x:x + w], size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
            sx, sy = w / size[0], h / size[1]
            rects, weights = self._hog.detectMultiScale(crop, winStride=(8, 8), padding=(8, 8), scale=1.08)
            for (rx, ry, rw, rh), weight in zip(rects, np.asarray(weights).reshape(-1), strict=False):
                if float(weight) < self.min_score:
                    continue
                # HOG's window has a border of about an eighth around the person.
                bx, by, bw, bh = rx + rw * 0.125, ry + rh * 0.06, rw * 0.75, rh * 0.88
                found.append(Detection((int(x + bx * sx), int(y + by * sy), max(1, int(bw * sx)),
                                        max(1, int(bh * sy))), float(weight)))
        return non_max_suppression(found)


def make_detector(name: str) -> Detector:
    """``"hog"``, ``"motion"`` or ``"package.module:factory"``."""
    if name == "hog":
        return HogDetector()
    if name in ("motion", "none"):
        return NoDetector()
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise CameraConfigError(f"unknown detector {name[:80]!r}: use hog, motion, or package.module:factory")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise CameraConfigError(f"detector {name[:80]!r} cannot be loaded ({exc}): check that the package is "
                                "installed and the name after ':' is a function in it") from None
    detector = factory()
    if not callable(getattr(detector, "detect", None)):
        raise CameraConfigError(f"detector {name[:80]!r} made an object without a detect(frame, regions) method")
    return detector  # type: ignore[no-any-return]
