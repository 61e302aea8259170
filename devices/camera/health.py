"""A camera's health from its pictures: frozen, dark or covered, moved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

HealthState = Literal["ok", "frozen", "dark", "moved"]


@dataclass(frozen=True)
class HealthReport:
    state: HealthState
    # One line in English for logs and the device_status event's detail.
    detail: str


class HealthMonitor:
    """Call :meth:`observe` with every analysed frame; it returns a report
    only when the state changes (the first frame reports "ok")."""

    def __init__(self, *, frozen_s: float = 10.0, dark_s: float = 5.0, moved_s: float = 10.0) -> None:
        self.frozen_s, self.dark_s, self.moved_s = frozen_s, dark_s, moved_s

    def observe(self, frame: NDArray[np.uint8], t: float) -> HealthReport | None:
        raise NotImplementedError
