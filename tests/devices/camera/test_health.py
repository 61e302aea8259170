"""A camera's health from its pictures: what an installer is told when the
picture freezes, goes black, is covered, or the camera is knocked."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from devices.camera.health import HealthMonitor

Frame = NDArray[np.uint8]
FPS = 10


def _scene(seed: int = 0) -> Frame:
    rng = np.random.default_rng(seed)
    scene = np.full((480, 640, 3), 110, np.uint8)
    for _ in range(40):
        x, y = int(rng.integers(0, 600)), int(rng.integers(0, 440))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        cv2.rectangle(scene, (x, y), (x + int(rng.integers(20, 120)), y + int(rng.integers(20, 120))), colour, -1)
    return scene


SCENE = _scene()
_NOISE = np.random.default_rng(1)


def noisy(frame: Frame) -> Frame:
    """A real sensor: every frame differs a little."""
    return np.clip(frame + _NOISE.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)


class Camera:
    def __init__(self, **limits: float) -> None:
        self.monitor = HealthMonitor(**{"frozen_s": 2.0, "dark_s": 2.0, "moved_s": 2.0, **limits})
        self.t = 0.0
        self.reports: list[tuple[float, str]] = []

    def show(self, make: Callable[[int], Frame], seconds: float) -> None:
        for i in range(int(seconds * FPS)):
            report = self.monitor.observe(make(i), self.t)
            if report is not None:
                self.reports.append((round(self.t, 1), report.state))
            self.t += 1 / FPS

    @property
    def states(self) -> list[str]:
        return [state for _, state in self.reports]


def test_a_working_camera_is_ok_once_and_stays_ok_while_people_walk_and_the_light_changes() -> None:
    camera = Camera()
    camera.show(lambda i: noisy(SCENE), 6)

    def person(i: int) -> Frame:
        frame = noisy(SCENE)
        cv2.rectangle(frame, (100 + 8 * i, 80), (220 + 8 * i, 470), (30, 30, 160), -1)
        return frame

    camera.show(person, 4)
    camera.show(lambda i: np.clip(noisy(SCENE) * 0.55, 0, 255).astype(np.uint8), 4)  # light switched down
    assert camera.states == ["ok"]


def test_a_frozen_picture_is_reported_after_its_time_and_recovers() -> None:
    camera = Camera(frozen_s=3.0)
    camera.show(lambda i: noisy(SCENE), 5)
    still = noisy(SCENE)
    camera.show(lambda i: still, 2.5)
    assert camera.states == ["ok"], "a stall shorter than frozen_s is not yet a fault"
    camera.show(lambda i: still, 1.0)
    camera.show(lambda i: noisy(SCENE), 1)
    assert camera.states == ["ok", "frozen", "ok"]


@pytest.mark.parametrize("cover", [np.zeros((480, 640, 3), np.uint8), np.full((480, 640, 3), 160, np.uint8)],
                         ids=["black", "covered by something flat"])
def test_a_black_or_covered_picture_is_dark(cover: Frame) -> None:
    camera = Camera()
    camera.show(lambda i: noisy(SCENE), 5)
    camera.show(lambda i: noisy(cover), 3)
    camera.show(lambda i: noisy(SCENE), 1)
    assert camera.states == ["ok", "dark", "ok"]
    # Dark comes first: a black picture is also unchanging and unlike the view.
    assert "frozen" not in camera.states and "moved" not in camera.states


@pytest.mark.parametrize(("shift", "axis"), [(60, 1), (45, 0)], ids=["sideways", "down"])
def test_a_knocked_camera_is_moved_until_it_points_back(shift: int, axis: int) -> None:
    camera = Camera()
    camera.show(lambda i: noisy(SCENE), 5)
    knocked = np.roll(SCENE, shift, axis=axis)
    camera.show(lambda i: noisy(knocked), 3)
    camera.show(lambda i: noisy(SCENE), 1)
    assert camera.states == ["ok", "moved", "ok"]


def test_limits_must_be_seconds_above_zero() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="frozen_s"):
            HealthMonitor(frozen_s=bad)
