"""The door line: a segment drawn across the doorway in the picture, and
which way across it is "in". Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from devices.camera.errors import CameraConfigError

Inward = Literal["up", "down", "left", "right"]
INWARDS: tuple[Inward, ...] = ("up", "down", "left", "right")
# Image coordinates: x to the right, y down.
_DIRECTION = {"up": (0.0, -1.0), "down": (0.0, 1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0)}


@dataclass(frozen=True)
class DoorLine:
    """From (x1, y1) to (x2, y2) in pixels of the source picture; ``inward``
    is the way a person walks to go in (for a line across the picture, "down"
    means people walking towards the bottom edge are coming in)."""

    x1: float
    y1: float
    x2: float
    y2: float
    inward: Inward = "down"

    def __post_init__(self) -> None:
        values = (self.x1, self.y1, self.x2, self.y2)
        if not all(math.isfinite(v) for v in values):
            raise CameraConfigError("the door line's points must be finite numbers")
        if self.length < 8:
            raise CameraConfigError("the door line must be at least 8 pixels long: give two points "
                                    "on either side of the doorway")
        if self.inward not in INWARDS:
            raise CameraConfigError(f"inward must be one of {', '.join(INWARDS)}")
        nx, ny = self._normal_raw
        dx, dy = _DIRECTION[self.inward]
        if abs(nx * dx + ny * dy) < 0.17:  # within about 10 degrees of parallel
            raise CameraConfigError(
                f"walking {self.inward} runs along the door line instead of across it: choose "
                f"{' or '.join(d for d in INWARDS if abs(nx * _DIRECTION[d][0] + ny * _DIRECTION[d][1]) >= 0.17)}")

    @classmethod
    def parse(cls, text: str, inward: str = "down") -> DoorLine:
        """``x1,y1,x2,y2`` as a user writes it on a command line."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4:
            raise CameraConfigError(f"a door line is four numbers x1,y1,x2,y2; got {text[:60]!r}")
        try:
            x1, y1, x2, y2 = (float(p) for p in parts)
        except ValueError:
            raise CameraConfigError(f"a door line is four numbers x1,y1,x2,y2; got {text[:60]!r}") from None
        if inward not in INWARDS:
            raise CameraConfigError(f"the inward direction must be one of {', '.join(INWARDS)}; got {inward[:20]!r}")
        return cls(x1, y1, x2, y2, inward)  # type: ignore[arg-type, unused-ignore]

    @property
    def length(self) -> float:
        return math.hypot(self.x2 - self.x1, self.y2 - self.y1)

    @property
    def _normal_raw(self) -> tuple[float, float]:
        length = self.length or 1.0
        return (-(self.y2 - self.y1) / length, (self.x2 - self.x1) / length)

    @property
    def normal(self) -> tuple[float, float]:
        """Unit normal pointing to the inside."""
        nx, ny = self._normal_raw
        dx, dy = _DIRECTION[self.inward]
        return (nx, ny) if nx * dx + ny * dy > 0 else (-nx, -ny)

    def distance(self, x: float, y: float) -> float:
        """Signed distance in pixels from the (infinite) line: positive inside."""
        nx, ny = self.normal
        return (x - self.x1) * nx + (y - self.y1) * ny

    def along(self, x: float, y: float) -> float:
        """Where the foot of (x, y) falls along the segment: 0 at the first
        point, 1 at the second."""
        dx, dy = self.x2 - self.x1, self.y2 - self.y1
        return ((x - self.x1) * dx + (y - self.y1) * dy) / (dx * dx + dy * dy)

    def check_fits(self, width: int, height: int) -> None:
        """Raise if the line is not inside a ``width`` x ``height`` picture."""
        for x, y in ((self.x1, self.y1), (self.x2, self.y2)):
            if not (0 <= x <= width and 0 <= y <= height):
                raise CameraConfigError(
                    f"the door line's point ({x:g}, {y:g}) is outside the {width}x{height} picture: "
                    f"give points between 0,0 and {width},{height}")

    def scaled(self, factor: float) -> DoorLine:
        return DoorLine(self.x1 * factor, self.y1 * factor, self.x2 * factor, self.y2 * factor, self.inward)
