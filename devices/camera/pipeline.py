"""Frames in, door-line crossings out: motion, person stage, tracks, line."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from devices.camera.crossing import Crossing
from devices.camera.geometry import DoorLine

Frame = NDArray[np.uint8]


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


class CameraPipeline:
    """Feed frames in time order with :meth:`process`; call :meth:`finish`
    at the end of a recording to settle the tracks still open."""

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings

    def process(self, frame: Frame, t: float) -> list[Crossing]:
        raise NotImplementedError

    def finish(self) -> list[Crossing]:
        raise NotImplementedError
