"""Following people from frame to frame.

Each frame's person boxes are assigned to the tracks by a minimum-cost
matching (the Hungarian method, scipy's linear_sum_assignment) on the
distance between where a track is expected to be and where a box is, so two
people walking close together keep their own tracks rather than swapping
whenever one box happens to be nearer first. A track that finds no box goes
on at its predicted position for a short while (a person hidden behind
another, or a missed detection), then ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

Box = tuple[int, int, int, int]
_FAR = 1e6


@dataclass
class Track:
    id: int
    box: Box
    t: float
    vx: float = 0.0  # pixels per second, smoothed
    vy: float = 0.0
    hits: int = 1
    missed_since: float | None = None
    confirmed: bool = False  # seen as a person by the person stage
    born: float = 0.0

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return (x + w / 2, y + h / 2)

    def predicted(self, t: float) -> tuple[float, float]:
        cx, cy = self.centre
        dt = min(max(t - self.t, 0.0), 1.0)
        return (cx + self.vx * dt, cy + self.vy * dt)

    def predicted_box(self, t: float) -> Box:
        cx, cy = self.predicted(t)
        _, _, w, h = self.box
        return (int(cx - w / 2), int(cy - h / 2), w, h)


class Tracker:
    """``max_gap_s``: how long a track survives without a box."""

    def __init__(self, *, max_gap_s: float = 0.8, gate: float = 0.9) -> None:
        self.max_gap_s = max_gap_s
        self.gate = gate  # how far (in the box's own size) a box may be from the prediction
        self.tracks: list[Track] = []
        self._next_id = 0

    def update(self, boxes: list[Box], t: float) -> tuple[list[tuple[Track, Box]], list[Track]]:
        """Assign ``boxes`` seen at time ``t``; returns the tracks that got a
        box (with it, new tracks included) and the tracks that ended."""
        pairs: list[tuple[Track, Box]] = []
        unmatched = set(range(len(boxes)))
        if self.tracks and boxes:
            cost = np.full((len(self.tracks), len(boxes)), _FAR)
            for i, track in enumerate(self.tracks):
                px, py = track.predicted(t)
                size = max(track.box[2], track.box[3] * 0.5, 8)
                for j, (x, y, w, h) in enumerate(boxes):
                    d = math.hypot(x + w / 2 - px, y + h / 2 - py) / size
                    # Boxes of very different size are probably not the same person.
                    ratio = max(w * h, 1) / max(track.box[2] * track.box[3], 1)
                    d += 0.25 * abs(math.log(ratio))
                    if d <= self.gate:
                        cost[i, j] = d
            rows, cols = linear_sum_assignment(cost)
            for i, j in zip(rows, cols, strict=True):
                if cost[i, j] >= _FAR:
                    continue
                track = self.tracks[i]
                self._move(track, boxes[j], t)
                pairs.append((track, boxes[j]))
                unmatched.discard(int(j))
        matched_ids = {id(track) for track, _ in pairs}
        ended: list[Track] = []
        alive: list[Track] = []
        for track in self.tracks:
            if id(track) not in matched_ids:
                if track.missed_since is None:
                    track.missed_since = t
                if t - track.missed_since > self.max_gap_s:
                    ended.append(track)
                    continue
            alive.append(track)
        for j in sorted(unmatched):
            track = Track(self._next_id, boxes[j], t, born=t)
            self._next_id += 1
            alive.append(track)
            pairs.append((track, boxes[j]))
        self.tracks = alive
        return pairs, ended

    @staticmethod
    def _move(track: Track, box: Box, t: float) -> None:
        dt = t - track.t
        ox, oy = track.centre
        track.box, track.t = box, t
        if dt > 0:
            nx, ny = track.centre
            a = 0.5 if track.hits > 1 else 1.0
            track.vx = (1 - a) * track.vx + a * (nx - ox) / dt
            track.vy = (1 - a) * track.vy + a * (ny - oy) / dt
        track.hits += 1
        track.missed_since = None

    def end_all(self) -> list[Track]:
        ended, self.tracks = self.tracks, []
        return ended

