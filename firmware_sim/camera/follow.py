"""Walk people through the camera's door after the swipes a building
simulator logs (:mod:`firmware_sim.swipe_log`): after a granted swipe at the
door, usually one person walks in and reaches the door line 1.5 to 3.5 s
later, sometimes a second close behind them (a tailgater); now and then
someone walks in with no swipe at all (an unidentified entry), and some time
after an entry someone may walk out. The mix is seeded."""

from __future__ import annotations

import logging
import math
import random
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from firmware_sim.camera.errors import CameraSimError
from firmware_sim.camera.live import LiveScene
from firmware_sim.swipe_log import follow

log = logging.getLogger(__name__)
# People waiting to walk later (unidentified entries, people going out): a
# flood of swipes makes no more than this many.
_MAX_LATER = 32


@dataclass(frozen=True)
class FollowMix:
    """Chances per granted swipe at the door."""

    tailgate: float = 0.15
    unidentified: float = 0.08
    outward: float = 0.3

    def __post_init__(self) -> None:
        if not all(math.isfinite(p) and 0 <= p <= 1 for p in (self.tailgate, self.unidentified, self.outward)):
            raise CameraSimError("the chances of a tailgater, an unidentified entry and someone going out are 0 to 1")


class Follower:
    """Tails ``path`` on its own thread (:meth:`start`, :meth:`stop`), or
    takes records one at a time with :meth:`handle`."""

    def __init__(self, scene: LiveScene, path: Path | str, door: str, *, seed: int = 0,
                 mix: FollowMix | None = None, from_start: bool = False) -> None:
        self.scene = scene
        self.path = Path(path)
        self.door = door
        self.mix = mix or FollowMix()
        self.from_start = from_start
        self._rng = random.Random(f"camera-follow:{seed}")
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()
        self.counts = {"lines": 0, "bad_lines": 0, "other_doors": 0, "refused": 0, "followed": 0, "tailgaters": 0,
                       "unidentified": 0, "outward": 0, "dropped": 0}

    def start(self) -> None:
        """Start tailing; returns once the log has been looked at, so every
        swipe logged from then on is followed."""
        self._thread = threading.Thread(target=self._run, name="camera-follow", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        if self._thread is not None:
            self._thread.join(2.0)

    def _run(self) -> None:
        for record in follow(self.path, self._stop, from_start=self.from_start, ready=self._ready):
            self.handle(record)

    def handle(self, record: dict[str, Any] | None) -> None:
        with self._lock:
            self.counts["lines"] += 1
        ts = _timestamp(record) if record is not None else None
        if record is None or ts is None or not isinstance(record.get("door"), str) \
                or not isinstance(record.get("granted"), bool):
            self._count("bad_lines")
            return
        if record["door"] != self.door:
            self._count("other_doors")
            return
        if not record["granted"]:
            self._count("refused")  # the door stayed shut: nobody walks in
            return
        rng = self._rng
        n = 2 if rng.random() < self.mix.tailgate else 1
        if self._enqueue(n, "in", 1, ts + rng.uniform(1.5, 3.5)):
            self._count("followed")
            if n == 2:
                self._count("tailgaters")
        if rng.random() < self.mix.unidentified:
            self._later(rng.uniform(10.0, 20.0), 1, "in", "unidentified")
        if rng.random() < self.mix.outward:
            self._later(rng.uniform(6.0, 15.0), 1, "out", "outward")

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _enqueue(self, n: int, direction: str, granted: int, cross_at: float | None = None) -> bool:
        try:
            self.scene.enqueue(n, "out" if direction == "out" else "in", granted=granted, cross_at=cross_at)
            return True
        except CameraSimError as exc:
            log.warning("camera: nobody walks: %s", exc)
            self._count("dropped")
            return False

    def _later(self, delay: float, n: int, direction: str, counter: str) -> None:
        def go() -> None:
            if not self._stop.is_set() and self._enqueue(n, direction, 0):
                self._count(counter)

        timer = threading.Timer(delay, go)
        timer.daemon = True
        with self._lock:
            if self._stop.is_set():
                return
            self._timers = [t for t in self._timers if t.is_alive()]
            if len(self._timers) >= _MAX_LATER:
                self.counts["dropped"] += 1
                return
            self._timers.append(timer)
        timer.start()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"door": self.door, **self.counts}


def _timestamp(record: dict[str, Any]) -> float | None:
    value = record.get("ts")
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None  # a time without its zone cannot be placed
    return when.timestamp()
