"""A simulated building of OSDP doors: readers on simulated RS-485 lines,
each with a door (lock and contact, :mod:`firmware_sim.doors`), tenants
entering and a script of incidents.

Each door runs its entries and script steps one after another on its own
thread, so an incident never overlaps a tenant's entry at the same door and
what a gateway should report stays unambiguous. Every action is recorded with
its times, and ``expected`` lists what the gateway and server should show:
``(door, kind, card)`` with kind ``granted``, ``denied``, ``forced``,
``held_open`` or ``reader_offline``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from firmware_sim.config import (
    EnterStep,
    ForcedStep,
    HeldOpenStep,
    OsdpBuildingConfig,
    OsdpDoorConfig,
    RevokedStep,
    ScriptStep,
    UnplugStep,
    parse_card,
)
from firmware_sim.doors import PersonModel, SimDoor
from firmware_sim.em4100_reader import _remove_symlink_if_ours, _replace_symlink
from firmware_sim.osdp_reader import ReaderCaps, SimOsdpLine
from firmware_sim.swipe_log import SwipeLog

log = logging.getLogger(__name__)

ExpectedKind = Literal["granted", "denied", "forced", "held_open", "reader_offline"]
Expected = tuple[str, ExpectedKind, str | None]

# How long a replugged reader may take to be polled again before the door
# carries on (the gateway revives an offline reader after a growing delay).
REPLUG_SETTLE_S = 10.0
# libosdp gives up on a silent reader after about 8 s of retries: a shorter
# unplug is no outage a gateway can see, so it is not expected to report one.
OFFLINE_NOTICED_S = 10.0
_HELD_OPEN_MARGIN_S = 3.0


@dataclass(frozen=True, kw_only=True)
class ActionRecord:
    door: str
    action: Literal["enter", "revoked", "forced", "held_open", "unplug"]
    scripted: bool
    card: str | None
    ts: float  # wall clock (time.time()) at the start, to compare with event timestamps
    at_s: float  # from the start of the run
    took_s: float
    # For card actions: did the lock open for the card, and was the door pushed open.
    unlocked: bool | None = None


@dataclass(frozen=True, kw_only=True)
class OsdpBuildingRecord:
    building: str
    elapsed_s: float
    lines: dict[str, dict[str, str]]  # line id -> {"port", "pts"}
    actions: list[ActionRecord]
    expected: list[Expected]

    def to_json(self) -> dict[str, Any]:
        return {
            "building": self.building,
            "elapsed_s": round(self.elapsed_s, 3),
            "lines": self.lines,
            "entries": sum(1 for a in self.actions if a.action == "enter"),
            "actions": [{**asdict(a), "ts": round(a.ts, 3), "at_s": round(a.at_s, 3), "took_s": round(a.took_s, 3)}
                        for a in self.actions],
            "expected": [list(e) for e in self.expected],
        }


class OsdpBuildingSim:
    """Opens every line's pty (and link) on construction, so :meth:`ports`
    can be handed to a gateway before :meth:`start`."""

    def __init__(self, config: OsdpBuildingConfig, *, duration_s: float | None = None,
                 swipe_log: Path | str | None = None) -> None:
        self.config = config
        # Every card presented as a JSON line (firmware_sim/swipe_log.py),
        # for a synthetic camera to walk people through the door after it.
        self.swipe_log = SwipeLog(swipe_log) if swipe_log is not None else None
        self._duration_s = duration_s if duration_s is not None else config.traffic.duration_s
        self._cards = config.cards()
        self._person = PersonModel(push_within_s=config.person.push_within_s,
                                   open_s_min=config.person.open_s_min, open_s_max=config.person.open_s_max)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._claimed = 0
        self._actions: list[ActionRecord] = []
        self._expected: list[Expected] = []
        self._threads: list[threading.Thread] = []
        self._started_at: float | None = None
        self._finished_at: float | None = None
        self._lines: dict[str, SimOsdpLine] = {}
        self._links: dict[str, Path] = {}
        self.doors: dict[str, SimDoor] = {}
        try:
            for line_cfg in config.lines:
                line = self._lines[line_cfg.id] = SimOsdpLine(channel_id=line_cfg.channel_id)
                if line_cfg.link is not None:
                    self._links[line_cfg.id] = Path(line_cfg.link)
                    _replace_symlink(Path(line_cfg.link), line.pts)
            for door_cfg in config.doors:
                self.doors[door_cfg.id] = self._add_door(door_cfg)
        except BaseException:
            self.close()
            raise

    def _add_door(self, cfg: OsdpDoorConfig) -> SimDoor:
        caps = ReaderCaps(led=cfg.led, buzzer=cfg.buzzer, outputs=1, inputs=1)
        scbk = bytes.fromhex(cfg.scbk) if cfg.scbk is not None else None
        reader = self._lines[cfg.line].add_reader(cfg.address, caps=caps, scbk=scbk, install_mode=cfg.install_mode)
        return SimDoor(cfg.id, reader)

    def ports(self) -> dict[str, str]:
        """The path a gateway opens per line: its link if configured."""
        return {lid: str(self._links[lid]) if lid in self._links else line.pts for lid, line in self._lines.items()}

    def pts(self) -> dict[str, str]:
        return {lid: line.pts for lid, line in self._lines.items()}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("building simulation already started")
        self._started_at = time.monotonic()
        for door_cfg in self.config.doors:
            self.doors[door_cfg.id].start()
            thread = threading.Thread(target=self._door_loop, args=(door_cfg.id,), name=f"sim-osdp-door {door_cfg.id}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()
        log.info("building %s: %d OSDP doors on %d lines, %d tenants, %d script steps", self.config.name,
                 len(self.doors), len(self._lines), len(self._cards), len(self.config.script))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every door is done; True if they are."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False
        self._mark_finished()
        return True

    def run(self) -> OsdpBuildingRecord:
        self.start()
        self.wait()
        return self.record()

    def stop(self) -> None:
        """Stop: waits are cut short, an open door is closed."""
        self._stop.set()
        for door in self.doors.values():
            door.interrupt()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(5.0)
        self._mark_finished()

    def close(self) -> None:
        self.stop()
        for line in self._lines.values():
            line.close()
        for lid, link in self._links.items():
            _remove_symlink_if_ours(link, self._lines[lid].pts)
        if self.swipe_log is not None:
            self.swipe_log.close()

    def __enter__(self) -> OsdpBuildingSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self) -> OsdpBuildingRecord:
        with self._lock:
            actions, expected = list(self._actions), list(self._expected)
        end = self._finished_at or time.monotonic()
        ports, pts = self.ports(), self.pts()
        return OsdpBuildingRecord(
            building=self.config.name,
            elapsed_s=end - self._started_at if self._started_at is not None else 0.0,
            lines={lid: {"port": ports[lid], "pts": pts[lid]} for lid in self._lines},
            actions=actions, expected=expected,
        )

    # ------------------------------------------------------------------ door threads

    def _mark_finished(self) -> None:
        if self._finished_at is None and self._threads and not any(t.is_alive() for t in self._threads):
            self._finished_at = time.monotonic()

    def _door_loop(self, door_id: str) -> None:
        try:
            _DoorRun(self, door_id).run()
        except Exception:
            log.exception("simulated OSDP door %s failed", door_id)

    def _claim_entry(self) -> bool:
        total = self.config.traffic.total
        with self._lock:
            if total is not None and self._claimed >= total:
                return False
            self._claimed += 1
            return True

    def _expect(self, *expected: Expected) -> None:
        with self._lock:
            self._expected.extend(expected)

    def _log_action(self, action: ActionRecord) -> None:
        with self._lock:
            self._actions.append(action)


class _DoorRun:
    """One door's entries and script steps, in time order."""

    def __init__(self, sim: OsdpBuildingSim, door_id: str) -> None:
        cfg = sim.config
        self.sim = sim
        self.door = sim.doors[door_id]
        self.rng = random.Random(f"{cfg.seed}:osdp-door:{door_id}")
        self.steps = sorted((s for s in cfg.script if s.door == door_id), key=lambda s: s.at_s)
        self.traffic = cfg.traffic
        self.rate_per_s = self.traffic.rate_per_min / 60.0 / len(cfg.doors)  # Poisson splits evenly
        assert sim._started_at is not None
        self.t0 = sim._started_at
        self.first_entry_at = self.t0 + self.traffic.start_delay_s
        self.deadline = None if sim._duration_s is None else self.first_entry_at + sim._duration_s

    def run(self) -> None:
        next_entry = self._first_entry()
        while not self.door.interrupted:
            next_step = self.t0 + self.steps[0].at_s if self.steps else float("inf")
            when = min(next_entry, next_step)
            if when == float("inf") or (self.deadline is not None and when >= self.deadline):
                return
            if not self.door.pause(when - time.monotonic()):
                return
            if next_step <= next_entry:
                self._step(self.steps.pop(0))
            elif self.sim._claim_entry():
                self._entry(EnterStep(action="enter", at_s=0, door=self.door.door_id), scripted=False)
                next_entry = self._after_entry(next_entry)
            else:
                next_entry = float("inf")

    def _first_entry(self) -> float:
        if self.traffic.pattern == "none":
            return float("inf")
        if self.traffic.pattern == "burst":
            return self.first_entry_at
        return self.first_entry_at + self.rng.expovariate(self.rate_per_s)

    def _after_entry(self, previous: float) -> float:
        if self.traffic.pattern == "burst":
            return time.monotonic() + self.traffic.burst_gap_s
        return previous + self.rng.expovariate(self.rate_per_s)

    # ------------------------------------------------------------------ actions

    def _step(self, step: ScriptStep) -> None:
        if isinstance(step, EnterStep):
            self._entry(step, scripted=True)
        elif isinstance(step, RevokedStep):
            self._card_action("revoked", step.card, [("denied", step.card)], self._open_s())
        elif isinstance(step, HeldOpenStep):
            card = step.card or self.rng.choice(self.sim._cards)
            open_s = step.open_s or self.sim.config.held_open_s + _HELD_OPEN_MARGIN_S
            self._card_action("held_open", card, [("granted", card), ("held_open", None)], open_s)
        elif isinstance(step, ForcedStep):
            self._timed("forced", [("forced", None)], lambda: self.door.hold_open(step.open_s))
        elif isinstance(step, UnplugStep):
            noticed: list[tuple[ExpectedKind, str | None]] = (
                [("reader_offline", None)] if step.unplugged_s >= OFFLINE_NOTICED_S else [])
            self._timed("unplug", noticed, lambda: self._unplug(step.unplugged_s))

    def _entry(self, step: EnterStep, *, scripted: bool) -> None:
        card = step.card or self.rng.choice(self.sim._cards)
        self._card_action("enter", card, [("granted", card)], self._open_s(), scripted=scripted)

    def _open_s(self) -> float:
        person = self.sim._person
        return self.rng.uniform(person.open_s_min, person.open_s_max)

    def _card_action(self, action: Literal["enter", "revoked", "held_open"], card: str,
                     expected: list[tuple[ExpectedKind, str | None]], open_s: float, *, scripted: bool = True) -> None:
        facility, number = parse_card(card)
        door_id = self.door.door_id
        self.sim._expect(*((door_id, kind, c) for kind, c in expected))
        if self.sim.swipe_log is not None:
            self.sim.swipe_log.write(door_id, card, any(kind == "granted" for kind, _ in expected))
        ts, start = time.time(), time.monotonic()
        unlocked = self.door.enter(facility, number, person=self.sim._person, open_s=open_s)
        log.info("door %s: %s with card %s: %s", door_id, action, card, "went in" if unlocked else "stayed shut")
        self.sim._log_action(ActionRecord(door=door_id, action=action, scripted=scripted, card=card, ts=ts,
                                          at_s=start - self.t0, took_s=time.monotonic() - start, unlocked=unlocked))

    def _timed(self, action: Literal["forced", "unplug"], expected: list[tuple[ExpectedKind, str | None]],
               do: Callable[[], None]) -> None:
        door_id = self.door.door_id
        self.sim._expect(*((door_id, kind, c) for kind, c in expected))
        ts, start = time.time(), time.monotonic()
        log.info("door %s: %s", door_id, action)
        do()
        self.sim._log_action(ActionRecord(door=door_id, action=action, scripted=True, card=None, ts=ts,
                                          at_s=start - self.t0, took_s=time.monotonic() - start))

    def _unplug(self, seconds: float) -> None:
        reader = self.door.reader
        reader.unplug()
        try:
            self.door.pause(seconds)
        finally:
            reader.replug()
        # Nobody swipes a reader the gateway is not polling yet: the card would wait in its queue.
        settle_until = time.monotonic() + REPLUG_SETTLE_S
        while not reader.online and time.monotonic() < settle_until and self.door.pause(0.05):
            pass
