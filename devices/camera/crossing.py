"""What the pipeline reports: one person crossing the door line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["in", "out"]


@dataclass(frozen=True)
class Crossing:
    """``t`` is the time of the frame on which the person's footpoint passed
    the line, in the stream's seconds (the caller's clock); ``box`` is the
    person's box (x, y, w, h) in source pixels on that frame; ``snapshot`` a
    JPEG of that frame (None when snapshots are off)."""

    t: float
    direction: Direction
    track: int
    box: tuple[int, int, int, int]
    snapshot: bytes | None = None
    # Whether the person stage saw a person in this track at least once.
    confirmed: bool = False
