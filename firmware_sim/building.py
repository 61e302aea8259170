"""A simulated building: one EM4100 reader per door, tenants swiping them.

Each door runs in its own thread. The simulator records every swipe that put
at least one intact frame on the line, so a test (or a demo) knows exactly
which reads a gateway should report. The same tag is never presented twice at
a door within ``min_same_tag_gap_s``: set that above the gateway's debounce
window and every recorded swipe is exactly one read.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devices.em4100 import Em4100Frame
from firmware_sim.config import BuildingConfig, DoorConfig
from firmware_sim.em4100_reader import Noise, SimEm4100Reader, SimReaderStats
from firmware_sim.swipe_log import SwipeLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DoorStats:
    port: str
    reader: SimReaderStats


@dataclass(frozen=True, kw_only=True)
class BuildingStats:
    building: str
    elapsed_s: float
    swipes: int
    swipes_with_valid_frame: int
    doors: dict[str, DoorStats]
    expected_reads: list[tuple[str, str]]  # (door id, card) in swipe order per door

    def to_json(self) -> dict[str, Any]:
        return {
            "building": self.building,
            "elapsed_s": round(self.elapsed_s, 3),
            "swipes": self.swipes,
            "swipes_with_valid_frame": self.swipes_with_valid_frame,
            "doors": {
                door: {"port": d.port, **asdict(d.reader)} for door, d in self.doors.items()
            },
            "expected_reads": [list(pair) for pair in self.expected_reads],
        }


class BuildingSim:
    """Opens every door's pty on construction, so :meth:`ports` can be handed
    to a gateway before :meth:`start` makes the first swipe."""

    def __init__(self, config: BuildingConfig, *, duration_s: float | None = None,
                 swipe_log: Path | str | None = None) -> None:
        self.config = config
        # Every swipe as a JSON line (firmware_sim/swipe_log.py), for a
        # synthetic camera to walk people through the door after it.
        self._swipe_log = SwipeLog(swipe_log) if swipe_log is not None else None
        self._duration_s = duration_s if duration_s is not None else config.swipes.duration_s
        self._tags = config.tag_ids()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._claimed = 0
        self._expected: list[tuple[str, str]] = []
        self._threads: list[threading.Thread] = []
        self._started_at: float | None = None
        self._finished_at: float | None = None
        self._readers: dict[str, SimEm4100Reader] = {}
        try:
            for door in config.doors:
                self._readers[door.id] = SimEm4100Reader(door.id, link=door.link)
        except BaseException:
            self.close()
            raise

    def ports(self) -> dict[str, str]:
        return {door: reader.port for door, reader in self._readers.items()}

    def pts(self) -> dict[str, str]:
        """The ``/dev/pts/N`` behind each door's port."""
        return {door: reader.pts for door, reader in self._readers.items()}

    def cards(self) -> list[str]:
        version = self.config.tenants.version
        return [Em4100Frame(version=version, tag_id=tag).card for tag in self._tags]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("building simulation already started")
        self._started_at = time.monotonic()
        for index, door in enumerate(self.config.doors):
            thread = threading.Thread(
                target=self._door_loop, args=(door, index), name=f"sim-door {door.id}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        log.info(
            "building %s: %d doors, %d tenants, %s swipes",
            self.config.name, len(self._readers), len(self._tags), self.config.swipes.pattern,
        )

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every door is done; True if they are."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
            if thread.is_alive():
                return False
        self._mark_finished()
        return True

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Every reader held between two presentations while inside: for
        placing a gateway crash or restart between swipes, as when nobody is
        at the door."""
        with ExitStack() as stack:
            for reader in self._readers.values():
                stack.enter_context(reader.held())
            yield

    def run(self) -> BuildingStats:
        """Start, wait until the swipes are done (or :meth:`stop`), return the stats."""
        self.start()
        self.wait()
        return self.stats()

    def stop(self) -> None:
        """Stop swiping; a presentation in progress finishes first (a fraction of a second)."""
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(5.0)
        self._mark_finished()

    def close(self) -> None:
        """Stop and unplug every reader."""
        self.stop()
        for reader in self._readers.values():
            reader.close()
        if self._swipe_log is not None:
            self._swipe_log.close()

    def __enter__(self) -> BuildingSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> BuildingStats:
        doors = {door: DoorStats(port=r.port, reader=r.stats()) for door, r in self._readers.items()}
        with self._lock:
            expected = list(self._expected)
        end = self._finished_at or time.monotonic()
        return BuildingStats(
            building=self.config.name,
            elapsed_s=end - self._started_at if self._started_at is not None else 0.0,
            swipes=sum(d.reader.swipes for d in doors.values()),
            swipes_with_valid_frame=sum(d.reader.swipes_with_valid_frame for d in doors.values()),
            doors=doors,
            expected_reads=expected,
        )

    # ------------------------------------------------------------------ door threads

    def _mark_finished(self) -> None:
        if self._finished_at is None and self._threads and not any(t.is_alive() for t in self._threads):
            self._finished_at = time.monotonic()

    def _door_loop(self, door: DoorConfig, index: int) -> None:
        try:
            _DoorRun(self, door, index).run()
        except Exception:
            log.exception("simulated door %s failed", door.id)

    def _claim_swipe(self) -> bool:
        total = self.config.swipes.total
        with self._lock:
            if total is not None and self._claimed >= total:
                return False
            self._claimed += 1
            return True

    def _record(self, door: str, card: str) -> None:
        with self._lock:
            self._expected.append((door, card))


class _DoorRun:
    """The swipe schedule of one door."""

    def __init__(self, sim: BuildingSim, door: DoorConfig, index: int) -> None:
        cfg = sim.config
        self.sim = sim
        self.door = door
        self.reader = sim._readers[door.id]
        self.swipes = cfg.swipes
        self.rng = random.Random(f"{cfg.seed}:door:{door.id}")
        n = cfg.noise
        self.noise = Noise(
            bad_checksum=n.bad_checksum, split=n.split, garbage=n.garbage, extra_repeats=n.extra_repeats,
            rng=random.Random(f"{cfg.seed}:noise:{door.id}"),
        )
        self.tags = sim._tags
        self.version = cfg.tenants.version
        self.rate_per_s = cfg.swipes.rate_per_min / 60.0 / len(cfg.doors)  # Poisson splits evenly
        self.next_index = index * max(1, len(self.tags) // len(cfg.doors))
        self.last_end: dict[int, float] = {}
        assert sim._started_at is not None
        self.start = sim._started_at + cfg.swipes.start_delay_s
        self.deadline = None if sim._duration_s is None else self.start + sim._duration_s

    def run(self) -> None:
        stop = self.sim._stop
        if not self._sleep_until(self.start):
            return
        next_at = self.start
        while not stop.is_set():
            if self.swipes.pattern == "poisson":
                next_at += self.rng.expovariate(self.rate_per_s)
            else:
                next_at = time.monotonic() + (self.swipes.burst_gap_s if self.last_end else 0.0)
            if not self._sleep_until(next_at):
                return
            tag = self._pick_tag()
            if tag is None or not self.sim._claim_swipe():
                return
            swiped_at = datetime.now(UTC)
            valid = self.reader.present(
                tag, version=self.version, repeats=self.swipes.repeats, noise=self.noise,
                repeat_interval_s=self.swipes.repeat_interval_s,
            )
            self.last_end[tag] = time.monotonic()
            card = Em4100Frame(version=self.version, tag_id=tag).card
            if valid:
                self.sim._record(self.door.id, card)
            if self.sim._swipe_log is not None:
                # A read-only reader lets in whoever it reads: a swipe with
                # no intact frame opens nothing.
                self.sim._swipe_log.write(self.door.id, card, valid, swiped_at)

    def _pick_tag(self) -> int | None:
        """A tenant who has not swiped here within the gap; waits for one if need be."""
        gap = self.swipes.min_same_tag_gap_s
        while True:
            now = time.monotonic()
            if self.swipes.pattern == "burst":
                tag = self.tags[self.next_index % len(self.tags)]
                ready_at = self.last_end.get(tag, -gap) + gap
                if ready_at <= now:
                    self.next_index += 1
                    return tag
            else:
                eligible = [t for t in self.tags if self.last_end.get(t, -gap) + gap <= now]
                if eligible:
                    return self.rng.choice(eligible)
                ready_at = min(self.last_end[t] for t in self.tags) + gap
            if not self._sleep_until(ready_at):
                return None

    def _sleep_until(self, when: float) -> bool:
        """False if the simulation was stopped or its time is up first."""
        if self.deadline is not None and when >= self.deadline:
            self.sim._stop.wait(max(0.0, self.deadline - time.monotonic()))
            return False
        return not self.sim._stop.wait(max(0.0, when - time.monotonic()))
