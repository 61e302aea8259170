"""Where things are in the rendered doorway, and how big a person looks at
each depth. Pure.

The camera hangs inside the entrance, looking down the corridor at the front
door: people coming in walk down the picture, towards the camera, and grow
as they come; people going out walk up the picture and leave through the
door. Every place is given for a 640x480 picture and scaled to the picture
asked for, so a small picture (for fast tests) is the same scene."""

from __future__ import annotations

from dataclasses import dataclass

from devices.camera.geometry import DoorLine

BASE_W = 640
BASE_H = 480
# Picture sizes the renderer accepts: below this a person is a few pixels,
# above it one frame is more memory than a simulator should hold per client.
MIN_W, MIN_H = 160, 120
MAX_W, MAX_H = 1920, 1440

# A person's height in pixels grows linearly with the picture row of their
# feet, as with a camera looking down from the ceiling: about 135 px at the
# door's threshold, 150 px on the door line and 260 px near the bottom edge.
_HEIGHT_SLOPE = 0.467
_HEIGHT_ROW0 = -87.0
PERSON_HEIGHT_M = 1.7
# Walking towards or away from the camera moves the feet fewer pixels per
# metre than walking across the picture (the floor is seen at a slant).
DEPTH_FORESHORTENING = 0.8


@dataclass(frozen=True)
class Layout:
    """The scene for a ``width`` x ``height`` picture."""

    width: int = BASE_W
    height: int = BASE_H

    @property
    def sx(self) -> float:
        return self.width / BASE_W

    @property
    def sy(self) -> float:
        return self.height / BASE_H

    def px(self, x: float, y: float) -> tuple[float, float]:
        """A point given in the 640x480 scene, in this picture's pixels."""
        return (x * self.sx, y * self.sy)

    # The door opening in the back wall (left, top, right, threshold row).
    @property
    def door(self) -> tuple[float, float, float, float]:
        return (248 * self.sx, 40 * self.sy, 392 * self.sx, 200 * self.sy)

    @property
    def threshold_y(self) -> float:
        """Feet above this row are outside, seen only through the door."""
        return 200 * self.sy

    def default_line(self) -> DoorLine:
        """The door line: a row across the corridor just inside the door;
        walking down the picture is going in."""
        return DoorLine(160 * self.sx, 240 * self.sy, 480 * self.sx, 240 * self.sy, "down")

    def person_height(self, foot_y: float) -> float:
        """A person's height in pixels with their feet on row ``foot_y``."""
        return max(8.0, _HEIGHT_SLOPE * (foot_y / self.sy - _HEIGHT_ROW0) * self.sy)

    def px_per_m(self, foot_y: float) -> float:
        return self.person_height(foot_y) / PERSON_HEIGHT_M

    def floor_edges(self, y: float) -> tuple[float, float]:
        """Left and right edge of the corridor's floor on row ``y``."""
        f = (y / self.sy - 200) / 280
        return ((150 - 210 * f) * self.sx, (490 + 210 * f) * self.sx)
