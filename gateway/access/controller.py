"""Access decisions and door alarms for one gateway, entirely local.

The controller is driven by the gateway's event loop: a credential comes in,
``decide`` answers from the in-memory allowlist and, on a grant, opens the
door's unlock window; door contact reports go to ``contact``; ``watch_doors``
raises held-open alarms when they fall due. Neither the broker nor the server
is consulted, so all of it works while they are unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from gateway.access.config import AccessConfig, AntiPassbackPair
from gateway.access.decide import Decision, Direction, PassbackCheck, decide
from gateway.access.doors import DoorEvent, DoorMachine
from gateway.access.store import AllowlistStore
from rentgate.aio import wait_event
from rentgate.wire import Credential

log = logging.getLogger(__name__)


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class AccessController:
    def __init__(self, store: AllowlistStore, config: AccessConfig, clock: Clock | None = None) -> None:
        self.store = store
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._doors: dict[str, DoorMachine] = {}
        self._pairs: dict[str, tuple[AntiPassbackPair, Direction]] = {}
        for pair in config.anti_passback:
            self._pairs[pair.entry] = (pair, "entry")
            self._pairs[pair.exit] = (pair, "exit")
        # (pair entry door, person) -> (last direction, when)
        self._passback: dict[tuple[str, str], tuple[Direction, float]] = {}
        self._wake = asyncio.Event()

    @property
    def unlock_pulse_s(self) -> float:
        return self.config.unlock_pulse_s

    # ------------------------------------------------------------------ decisions

    def decide(self, device_id: str, door: str | None, credential: Credential) -> Decision:
        """Grant or deny; a grant also opens ``door``'s unlock window, so the
        caller pulses the lock for ``unlock_pulse_s`` and nothing else."""
        entry = self.store.lookup(credential)
        revoked = entry is None and self.store.is_revoked(credential)
        check = self._passback_check(door, entry.person) if entry is not None and door is not None else None
        decision = decide(entry, door=door, now=self.clock.now(), passback_state=check, revoked=revoked)
        if decision.granted and door is not None:
            self._record_passage(door, decision.person)
            self.door(door).unlocked(self.unlock_pulse_s, self.clock.monotonic())
            self._wake.set()
        log.debug("device %s door %s: %s (%s)", device_id, door, decision.reason, decision.person)
        return decision

    def _passback_check(self, door: str, person: str) -> PassbackCheck | None:
        found = self._pairs.get(door)
        if found is None:
            return None
        pair, direction = found
        last = self._passback.get((pair.entry, person))
        if last is None:
            return PassbackCheck(direction, None)
        last_direction, at = last
        if pair.forget_after_s is not None and self.clock.monotonic() - at >= pair.forget_after_s:
            return PassbackCheck(direction, None)
        return PassbackCheck(direction, last_direction)

    def _record_passage(self, door: str, person: str | None) -> None:
        found = self._pairs.get(door)
        if found is None or person is None:
            return
        pair, direction = found
        self._passback[(pair.entry, person)] = (direction, self.clock.monotonic())

    # ------------------------------------------------------------------ doors

    def door(self, door: str) -> DoorMachine:
        machine = self._doors.get(door)
        if machine is None:
            machine = self._doors[door] = DoorMachine(door, held_open_s=self.config.held_open_s)
        return machine

    def unlocked(self, door: str) -> None:
        """The lock was released by other means (a request-to-exit button, a
        remote open): opening the door now is not forced."""
        self.door(door).unlocked(self.unlock_pulse_s, self.clock.monotonic())

    def contact(self, door: str, is_open: bool) -> list[DoorEvent]:
        events = self.door(door).contact(is_open, self.clock.monotonic())
        self._wake.set()
        for event in events:
            if event.kind == "forced":
                log.warning("door %s forced open", door)
        return events

    def tick(self) -> list[DoorEvent]:
        now = self.clock.monotonic()
        events = [event for machine in self._doors.values() for event in machine.tick(now)]
        for event in events:
            log.warning("door %s held open", event.door)
        return events

    def next_deadline(self) -> float | None:
        deadlines = [d for m in self._doors.values() if (d := m.next_deadline()) is not None]
        return min(deadlines, default=None)

    async def watch_doors(self, emit: Callable[[DoorEvent], None]) -> None:
        """Raise held-open alarms as they fall due; runs until cancelled.
        ``contact`` and ``decide`` must be called on this task's event loop."""
        while True:
            for event in self.tick():
                emit(event)
            deadline = self.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock.monotonic())
            self._wake.clear()
            await wait_event(self._wake, timeout)
