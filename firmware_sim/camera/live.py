"""The doorway in real time: people are enqueued while it runs (``n`` people
walking in or out, with how many of them swiped a card), and every frame is
rendered at the wall clock's time. The truth (who crosses the door line when,
and whether the door should see a match, a tailgater or an unidentified
entry) is known the moment a group is enqueued and counted as it happens."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from firmware_sim.camera.errors import CameraSimError
from firmware_sim.camera.layout import Layout
from firmware_sim.camera.render import Frame, Renderer, check_fps
from firmware_sim.camera.script import Outcome, Track, Walker, line_crossings, queue_group, track_of

# People on the way at once: more is a queue the doorway cannot hold, and
# every one of them is drawn on every frame.
MAX_WALKERS = 64
MAX_GROUP = 5
# Crossings kept for /stats (the counters count them all).
_KEPT_CROSSINGS = 1000


@dataclass(frozen=True)
class LiveCrossing:
    """A crossing the scene has scheduled: ``ts`` is wall-clock time."""

    ts: float
    direction: Literal["in", "out"]
    person: int
    group: int
    outcome: Outcome

    def to_json(self) -> dict[str, Any]:
        return {"ts": round(self.ts, 3), "direction": self.direction, "person": self.person, "group": self.group,
                "outcome": self.outcome}


class LiveScene:
    """Thread-safe: :meth:`enqueue` from any thread, frames from one."""

    def __init__(self, *, width: int = 640, height: int = 480, seed: int = 0, noise_sigma: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.layout = Layout(width, height)
        self.line = self.layout.default_line()
        self._renderer = Renderer(self.layout, seed=seed, noise_sigma=noise_sigma)
        self._rng = random.Random(f"camera-live:{seed}")
        self._clock = clock
        self._t0 = clock()
        self._wall0 = wall()
        self._lock = threading.Lock()
        self._people: list[tuple[Walker, Track]] = []
        self._crossings: deque[LiveCrossing] = deque()
        self._seen: deque[LiveCrossing] = deque(maxlen=_KEPT_CROSSINGS)
        self._counts = {"in": 0, "out": 0, "matched": 0, "tailgating": 0, "unidentified": 0}
        self._next_id = 0
        self._groups = 0
        self._grants = 0

    def now(self) -> float:
        """Seconds since the scene started."""
        return self._clock() - self._t0

    def to_wall(self, t: float) -> float:
        return self._wall0 + t

    def enqueue(self, n: int = 1, direction: Literal["in", "out"] = "in", *, granted: int = 0,
                cross_at: float | None = None) -> list[LiveCrossing]:
        """``n`` people walk in (or out) one behind the other, starting now,
        or so that the first reaches the door line at wall time ``cross_at``
        if that is still possible; ``granted`` of them swiped a card. Returns
        the crossings they will make."""
        if not 1 <= n <= MAX_GROUP:
            raise CameraSimError(f"a group is 1 to {MAX_GROUP} people")
        if direction not in ("in", "out"):
            raise CameraSimError('the direction is "in" or "out"')
        if not 0 <= granted <= n or (direction == "out" and granted):
            raise CameraSimError("granted is 0 to the group's size, and 0 for people going out")
        with self._lock:
            if len(self._people) + n > MAX_WALKERS:
                raise CameraSimError(f"{len(self._people)} people are already on their way; at most {MAX_WALKERS}")
            now = self.now()
            start = now + 0.05
            group = self._groups
            walkers = queue_group(direction, n, self._rng, self.layout, group=group, t0=0.0, next_id=self._next_id)
            if cross_at is not None:
                first = min((c[0] for w in walkers for c in line_crossings(track_of(w, self.layout), self.line)),
                            default=0.0)
                start = max(start, cross_at - self._wall0 - first)
            walkers = [Walker(w.id, w.group, round(w.start_t + start, 3), w.start, w.legs, w.look, w.speed_mps)
                       for w in walkers]
            self._next_id += n
            self._groups += 1
            self._grants += granted
            planned: list[LiveCrossing] = []
            for walker in walkers:
                track = track_of(walker, self.layout)
                self._people.append((walker, track))
                planned += [LiveCrossing(self.to_wall(t), d, walker.id, group, "out") if d == "out" else
                            LiveCrossing(self.to_wall(t), d, walker.id, group, "unidentified")
                            for t, d, _, _ in line_crossings(track, self.line)]
            planned.sort(key=lambda c: c.ts)
            inward = 0
            for i, c in enumerate(planned):
                if c.direction == "in":
                    outcome: Outcome = "matched" if inward < granted else "tailgating" if granted else "unidentified"
                    planned[i] = LiveCrossing(c.ts, "in", c.person, c.group, outcome)
                    inward += 1
            self._crossings.extend(planned)
            self._crossings = deque(sorted(self._crossings, key=lambda c: c.ts))
            return planned

    def frame(self) -> tuple[float, Frame]:
        """(wall time, picture) now."""
        t = self.now()
        with self._lock:
            self._people = [p for p in self._people if p[1].end >= t]
            people = list(self._people)
            wall = self.to_wall(t)
            while self._crossings and self._crossings[0].ts <= wall:
                c = self._crossings.popleft()
                self._seen.append(c)
                self._counts[c.direction] += 1
                if c.direction == "in":
                    self._counts[c.outcome] += 1
        return wall, self._renderer.frame(t, people)

    def busy(self) -> bool:
        """Whether anyone is on their way."""
        with self._lock:
            return bool(self._people)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"groups": self._groups, "people": self._next_id, "grants": self._grants,
                    "on_their_way": len(self._people), "crossed": dict(self._counts),
                    "pending_crossings": len(self._crossings),
                    "crossings": [c.to_json() for c in self._seen]}

    def run(self, fps: float, stop: threading.Event, sink: Callable[[float, Frame], None]) -> None:
        """Render ``fps`` frames a second into ``sink`` until ``stop``; a
        frame that cannot be made in time is skipped, not made up for."""
        check_fps(fps)
        period = 1.0 / fps
        due = self._clock()
        while not stop.is_set():
            wall, picture = self.frame()
            sink(wall, picture)
            due += period
            late = self._clock() - due
            if late > period:
                due += period * int(late / period)  # skip the frames we are too late for
            stop.wait(max(0.0, due - self._clock()))
