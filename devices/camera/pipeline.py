"""Frames in, door-line crossings out: motion every frame, the person stage
on moving regions a few times a second, tracks, and the line.

Where a person is: the bottom middle of their box (where the feet are), or
its centre for a camera looking straight down (``anchor = "centre"``). A
track changes side only when that point is clearly beyond the line (a band
of a few pixels either side), so a person standing on the line, lingering,
or whose box jitters is not counted again and again; a crossing counts only
where the line is drawn (its two ends, with a little margin), so someone
walking past the end of a short line is not counted. A person who crosses
and turns back has crossed twice: in, then out.

Merged people: two people side by side or one right behind the other often
make one moving blob. The blob is split (a) by the person stage when it
finds several people in it, (b) by the tracks that were already following
them separately before they met, and (c) by the typical width of one person
learnt from the blobs the person stage confirmed, for people who arrive
together.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from devices.camera.crossing import Crossing
from devices.camera.detect import Detection, Detector, make_detector
from devices.camera.errors import BadFrame, CameraConfigError
from devices.camera.geometry import DoorLine
from devices.camera.motion import MotionSettings, MotionStage
from devices.camera.track import Box, Track, Tracker

Frame = NDArray[np.uint8]
Anchor = Literal["bottom", "centre"]
# Frames a track needs before its crossings count: one or two frames of
# something moving are noise (a flicker, a compression artefact).
MIN_HITS = 3
# Two tracks crossing the same way at the same place within this time are
# one person followed twice.
TWICE_S = 0.6
# A track younger than this when it crosses may be such a second track.
YOUNG_S = 1.0
# How far beyond the ends of the line a crossing still counts (share of its length).
END_MARGIN = 0.15
# Limits on what a frame may be: 4K is the largest a door camera sends.
MAX_SIDE = 4096


@dataclass(frozen=True)
class PipelineSettings:
    line: DoorLine
    # "hog" (OpenCV's people detector on moving regions), "motion" (moving
    # blobs of a person's size only), or "package.module:factory" for another.
    detector: str = "hog"
    # How often the person stage runs while something moves (per second).
    person_fps: float = 5.0
    snapshots: bool = True
    jpeg_quality: int = 80
    anchor: Anchor = "bottom"
    # Count only tracks the person stage has seen as a person at least once.
    # Off by default: the HOG detector misses people seen from above or far
    # away, and a miss must not lose a tailgater.
    require_person: bool = False
    motion: MotionSettings = field(default_factory=MotionSettings)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.person_fps) and 0 < self.person_fps <= 60):
            raise CameraConfigError("person_fps must be above 0 and at most 60 (times a second)")
        if not 10 <= self.jpeg_quality <= 100:
            raise CameraConfigError("jpeg_quality must be between 10 and 100")
        if self.anchor not in ("bottom", "centre"):
            raise CameraConfigError("anchor must be bottom or centre")


# A blob this many times wider than one person (where its feet are) holds
# people side by side; this many times taller, one behind the other.
SPLIT_WIDE = 1.4
SPLIT_TALL = 1.25
# Moving things lower than this share of a person where they stand are not one.
TOO_SHORT = 0.45


class SizeModel:
    """How big one person looks where their feet are: perspective makes
    people nearer the camera (lower in the picture) bigger. Learnt from
    moving blobs in which the person stage found exactly one person, as a
    straight line of size against the feet's height in the picture."""

    def __init__(self, keep: int = 200, least: int = 6) -> None:
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=keep)
        self._least = least
        self._fit: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None

    def add(self, box: Box) -> None:
        x, y, w, h = box
        self._samples.append((float(y + h), float(w), float(h)))
        self._fit = None

    def expected(self, foot_y: float) -> tuple[float, float] | None:
        if len(self._samples) < self._least:
            return None
        if self._fit is None:
            data = np.array(self._samples)
            ys = data[:, 0]
            if float(ys.max() - ys.min()) < 40:  # no spread to fit a slope on
                self._fit = (np.array([0.0, float(np.median(data[:, 1]))]),
                             np.array([0.0, float(np.median(data[:, 2]))]))
            else:
                self._fit = (np.polyfit(ys, data[:, 1], 1), np.polyfit(ys, data[:, 2], 1))
        fw, fh = self._fit
        w = float(np.polyval(fw, foot_y))
        h = float(np.polyval(fh, foot_y))
        return (w, h) if w > 4 and h > 8 else None


@dataclass
class _LineState:
    side: int = 0  # -1 outside, +1 inside, 0 not yet clear
    pending: list[Crossing] = field(default_factory=list)


class CameraPipeline:
    """Feed frames in time order with :meth:`process`; call :meth:`finish`
    at the end of a recording to settle the tracks still open."""

    def __init__(self, settings: PipelineSettings, detector: Detector | None = None) -> None:
        self.settings = settings
        self.detector = detector if detector is not None else make_detector(settings.detector)
        self._motion: MotionStage | None = None
        self._size: tuple[int, int] | None = None
        self._tracker = Tracker()
        self._states: dict[int, _LineState] = {}
        self._last_person_t = -math.inf
        self._last_t = -math.inf
        self._sizes = SizeModel()
        self._band = 4.0
        # Counters for a caller's status page and the benchmark.
        self.frames = 0
        self.person_runs = 0
        self.bad_frames = 0
        self.duplicates = 0
        self._recent: list[tuple[float, str, float, int, Box, bool]] = []

    # ------------------------------------------------------------------ input

    def _start(self, width: int, height: int) -> None:
        self.settings.line.check_fits(width, height)
        self._size = (width, height)
        self._motion = MotionStage(width, height, self.settings.motion)
        self._tracker = Tracker()
        self._states.clear()
        self._sizes = SizeModel()
        self._band = max(3.0, 0.012 * (width + height))

    def _check(self, frame: object) -> Frame:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3) \
                or (frame.ndim == 3 and frame.shape[2] != 3) or frame.size == 0:
            self.bad_frames += 1
            raise BadFrame("not an 8-bit colour or grey picture")
        h, w = frame.shape[:2]
        if w < 32 or h < 32 or w > MAX_SIDE or h > MAX_SIDE:
            self.bad_frames += 1
            raise BadFrame(f"a picture of {w}x{h} pixels is outside 32..{MAX_SIDE} on a side")
        return frame

    # ------------------------------------------------------------------ frames

    def process(self, frame: Frame, t: float) -> list[Crossing]:
        frame = self._check(frame)
        if not math.isfinite(t) or t < self._last_t:
            self.bad_frames += 1
            raise BadFrame("frame times must be finite and must not go back")
        self._last_t = t
        h, w = frame.shape[:2]
        if self._size != (w, h):
            self._start(w, h)  # the first frame, or the camera changed its resolution
        assert self._motion is not None
        self.frames += 1
        blobs = [b for b in self._motion.regions(frame) if b[3] >= 0.06 * h]
        confirmed: set[Box] = set()
        if blobs and t - self._last_person_t >= 1.0 / self.settings.person_fps:
            self._last_person_t = t
            self.person_runs += 1
            blobs, confirmed = self._with_people(blobs, self.detector.detect(frame, blobs))
        boxes = self._split_merged(blobs, confirmed, t)
        pairs, ended = self._tracker.update(boxes, t)
        crossings: list[Crossing] = []
        snapshot: list[bytes | None] = []
        for track, box in pairs:
            if box in confirmed:
                track.confirmed = True
            crossings += self._follow(track, frame, t, snapshot)
        for track in ended:
            self._states.pop(track.id, None)
        return crossings

    def finish(self) -> list[Crossing]:
        """The end of a recording: crossings still waiting for their track to
        be sure are given if the track got as far as two frames."""
        out: list[Crossing] = []
        for track in self._tracker.end_all():
            state = self._states.pop(track.id, None)
            if state is not None and track.hits >= 2 and self._counts(track, need_hits=False):
                out += state.pending
        return out

    @property
    def person_width(self) -> float | None:
        """The typical width of one person in the middle of the picture, once learnt."""
        size = self._sizes.expected(self._size[1] / 2) if self._size else None
        return size[0] if size else None

    # ------------------------------------------------------------------ splitting

    def _with_people(self, blobs: list[Box], people: list[Detection]) -> tuple[list[Box], set[Box]]:
        """Blobs with the person stage's verdict: a blob holding several
        people becomes their boxes; a blob holding one is confirmed."""
        out: list[Box] = []
        confirmed: set[Box] = set()
        for blob in blobs:
            inside = [d.box for d in people if _centre_in(d.box, blob, margin=0.2)]
            if len(inside) >= 2:
                # Keep the blob's feet: the detector's box bottom is less exact.
                bottom = blob[1] + blob[3]
                for x, y, bw, bh in inside:
                    box = (x, y, bw, max(1, max(bh, bottom - y)))
                    out.append(box)
                    confirmed.add(box)
            else:
                out.append(blob)
                if inside:
                    confirmed.add(blob)
                    self._sizes.add(blob)
        return out, confirmed

    def _split_merged(self, blobs: list[Box], confirmed: set[Box], t: float) -> list[Box]:
        out: list[Box] = []
        live = [tr for tr in self._tracker.tracks if tr.hits >= 2 and tr.missed_since is None]
        for blob in blobs:
            if blob in confirmed:
                out.append(blob)
                continue
            owners = [tr for tr in live if _point_in(tr.predicted(t), blob)]
            if len(owners) >= 2:
                out += [_clip(tr.predicted_box(t), blob) for tr in owners]
                continue
            expected = self._sizes.expected(blob[1] + blob[3])
            if expected is None:
                out.append(blob)
                continue
            ew, eh = expected
            x, y, w, h = blob
            if h < TOO_SHORT * eh:
                continue  # a shadow, a bag, a door leaf: lower than anyone standing there
            if w > SPLIT_WIDE * ew:
                # Side by side: strips of one person's width.
                n = min(4, max(2, round(w / ew)))
                step = w / n
                out += [(int(x + i * step), y, max(1, int(step)), h) for i in range(n)]
            elif h > SPLIT_TALL * eh:
                # One behind the other: the front one's feet are the blob's,
                # the one behind shows above them.
                front_h = int(min(h, eh))
                out += [(x, y + h - front_h, w, front_h), (x, y, w, max(1, h - front_h // 2))]
            else:
                out.append(blob)
        return out

    # ------------------------------------------------------------------ the line

    def _anchor(self, box: Box) -> tuple[float, float]:
        x, y, w, h = box
        return (x + w / 2, y + h if self.settings.anchor == "bottom" else y + h / 2)

    def _counts(self, track: Track, need_hits: bool = True) -> bool:
        if need_hits and track.hits < MIN_HITS:
            return False
        return track.confirmed or not self.settings.require_person

    def _follow(self, track: Track, frame: Frame, t: float, snapshot: list[bytes | None]) -> list[Crossing]:
        state = self._states.setdefault(track.id, _LineState())
        line = self.settings.line
        ax, ay = self._anchor(track.box)
        d = line.distance(ax, ay)
        side = 1 if d > self._band else -1 if d < -self._band else 0
        out: list[Crossing] = []
        if side and state.side and side != state.side and self._on_line(track.box, ax, ay):
            if not snapshot:
                snapshot.append(self._jpeg(frame))
            state.pending.append(Crossing(t=t, direction="in" if side > 0 else "out", track=track.id,
                                          box=track.box, snapshot=snapshot[0], confirmed=track.confirmed))
        if side:
            state.side = side
        if state.pending and self._counts(track):
            young = t - track.born < YOUNG_S
            held = [_with_confirmed(c, track.confirmed) for c in state.pending]
            out = [c for c in held if not self._twice(c, young)]
            state.pending = []
        return out

    def _twice(self, crossing: Crossing, young: bool) -> bool:
        """Whether another track crossed the same way at the same place a
        moment ago, and this one is a track born just now: one person
        followed by two tracks (a box split in two, a track lost and picked
        up again on the line) must count once. People side by side cross at
        the same time a body's width apart, each on a track of their own
        since they came into view; one behind another, a second or more
        later."""
        ax, _ = self._anchor(crossing.box)
        along = self.settings.line.along(ax, crossing.box[1] + crossing.box[3])
        width = (self.person_width or 0.0) / max(self.settings.line.length, 1.0)
        near = max(0.5 * width, 0.05)
        self._recent = [r for r in self._recent if crossing.t - r[0] <= TWICE_S]
        for t, direction, where, track, box, confirmed in self._recent:
            if direction != crossing.direction or track == crossing.track or abs(where - along) > near:
                continue
            # Or two old tracks that have come to follow one person: one box
            # inside the other, on the same feet, and not both seen as a
            # person by the person stage (two people one just behind the
            # other can look like that from a high camera).
            if young or (_same_feet(box, crossing.box) and not (confirmed and crossing.confirmed)):
                self.duplicates += 1
                return True
        self._recent.append((crossing.t, crossing.direction, along, crossing.track, crossing.box,
                             crossing.confirmed))
        return False

    def _on_line(self, box: Box, ax: float, ay: float) -> bool:
        """Whether a side change happened across the drawn line rather than
        past one of its ends: the person's point is within the line (with a
        margin), or at least half of their box's width lies along it (a
        person whose feet pass just beyond the end of a short line drawn
        across a corridor still walked through it)."""
        line = self.settings.line
        if -END_MARGIN <= line.along(ax, ay) <= 1 + END_MARGIN:
            return True
        x, y, w, h = box
        spans = [line.along(px, py) for px, py in ((x, y), (x + w, y), (x, y + h), (x + w, y + h))]
        lo, hi = min(spans), max(spans)
        return hi > lo and (min(hi, 1.0) - max(lo, 0.0)) >= 0.5 * (hi - lo)

    def _jpeg(self, frame: Frame) -> bytes | None:
        if not self.settings.snapshots:
            return None
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality])
        return bytes(data) if ok else None


def _with_confirmed(crossing: Crossing, confirmed: bool) -> Crossing:
    if crossing.confirmed == confirmed:
        return crossing
    return Crossing(crossing.t, crossing.direction, crossing.track, crossing.box, crossing.snapshot, confirmed)


def _same_feet(a: Box, b: Box) -> bool:
    """Most of the smaller box inside the other, both standing on the same
    row: one person, not one behind another (whose feet are higher)."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0 or w * h < 0.7 * min(a[2] * a[3], b[2] * b[3]):
        return False
    return abs((a[1] + a[3]) - (b[1] + b[3])) <= 0.15 * max(a[3], b[3])


def _point_in(point: tuple[float, float], box: Box) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def _centre_in(inner: Box, outer: Box, margin: float) -> bool:
    x, y, w, h = outer
    mx, my = w * margin, h * margin
    return _point_in((inner[0] + inner[2] / 2, inner[1] + inner[3] / 2), (int(x - mx), int(y - my),
                                                                          int(w + 2 * mx), int(h + 2 * my)))


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _clip(box: Box, within: Box) -> Box:
    x0, y0 = max(box[0], within[0]), max(box[1], within[1])
    x1 = min(box[0] + box[2], within[0] + within[2])
    y1 = min(box[1] + box[3], within[1] + within[3])
    if x1 <= x0 or y1 <= y0:
        return box
    # The feet stay where the blob's are.
    return (x0, y0, x1 - x0, max(y1, within[1] + within[3]) - y0)
