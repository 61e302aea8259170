"""Counted crossings against the truth: how the tests, the benchmark and
anyone holding annotated footage judge the counting. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from devices.camera.crossing import Direction


@dataclass(frozen=True)
class DirectionScore:
    true: int
    counted: int
    matched: int  # one-to-one pairs of the same direction within the tolerance

    @property
    def error_pct(self) -> float:
        """|counted - true| as a share of the truth: what a door counter's
        total gets wrong (misses and extra counts can cancel out here)."""
        return 100.0 * abs(self.counted - self.true) / self.true if self.true else (0.0 if not self.counted else 100.0)

    @property
    def precision(self) -> float:
        return self.matched / self.counted if self.counted else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.true if self.true else 1.0


def match_times(counted: Sequence[float], true: Sequence[float], tolerance_s: float) -> list[tuple[int, int]]:
    """Pairs (i counted, j true) one to one, each within ``tolerance_s``, as
    many as possible and then as close as possible."""
    if not counted or not true:
        return []
    gap = np.abs(np.subtract.outer(np.asarray(counted, float), np.asarray(true, float)))
    # Beyond the tolerance a pair costs more than leaving both unmatched.
    cost = np.where(gap <= tolerance_s, gap, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if gap[i, j] <= tolerance_s]


def score(counted: Sequence[tuple[float, Direction]], true: Sequence[tuple[float, Direction]],
          tolerance_s: float = 1.0) -> dict[Direction, DirectionScore]:
    out: dict[Direction, DirectionScore] = {}
    for direction in ("in", "out"):
        c = [t for t, d in counted if d == direction]
        r = [t for t, d in true if d == direction]
        out[direction] = DirectionScore(len(r), len(c), len(match_times(c, r, tolerance_s)))
    return out
