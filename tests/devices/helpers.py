"""Waiting helpers for tests that cross threads: no fixed sleeps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from devices.serial_reader import Frame


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Collector:
    """Records what a SerialFrameReader reports, from its thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cards: list[str] = []
        self.statuses: list[tuple[bool, str | None]] = []

    def on_frame(self, frame: Frame) -> None:
        with self._lock:
            self.cards.append(frame.card)

    def on_status(self, online: bool, reason: str | None) -> None:
        with self._lock:
            self.statuses.append((online, reason))

    @property
    def online(self) -> bool:
        with self._lock:
            return bool(self.statuses) and self.statuses[-1][0]

    def online_count(self) -> int:
        with self._lock:
            return sum(1 for up, _ in self.statuses if up)
