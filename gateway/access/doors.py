"""Door alarms from a lock and a door contact, as a pure state machine.

Time comes in as arguments (monotonic seconds), so tests drive the clock and
the controller decides when to look again (``next_deadline``).

A door that opens while its lock is not in an unlock window was forced. A door
open longer than ``held_open_s`` is held open, reported once per opening. The
first contact report after start only sets the state: the gateway cannot know
whether a door that was already open was forced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DoorEventKind = Literal["open", "closed", "forced", "held_open"]


@dataclass(frozen=True, slots=True)
class DoorEvent:
    """``kind`` matches ``wire.DoorState.state``."""

    door: str
    kind: DoorEventKind
    at: float


class DoorMachine:
    def __init__(self, door: str, *, held_open_s: float) -> None:
        self.door = door
        self.held_open_s = held_open_s
        self.is_open: bool | None = None
        self._unlocked_until = float("-inf")
        self._opened_at: float | None = None
        self._held_reported = False

    def unlocked(self, pulse_s: float, now: float) -> None:
        """The lock was released for ``pulse_s`` (after a grant)."""
        self._unlocked_until = max(self._unlocked_until, now + pulse_s)

    def unlock_window_open(self, now: float) -> bool:
        return now < self._unlocked_until

    def contact(self, is_open: bool, now: float) -> list[DoorEvent]:
        if is_open == self.is_open:
            return []  # a repeated report, not a change
        first_report = self.is_open is None
        self.is_open = is_open
        if not is_open:
            self._opened_at = None
            return [DoorEvent(self.door, "closed", now)]
        self._opened_at = now
        self._held_reported = False
        if first_report or self.unlock_window_open(now):
            return [DoorEvent(self.door, "open", now)]
        return [DoorEvent(self.door, "forced", now)]

    def tick(self, now: float) -> list[DoorEvent]:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        self._held_reported = True
        return [DoorEvent(self.door, "held_open", now)]

    def next_deadline(self) -> float | None:
        """When ``tick`` may next have something to say, or None."""
        if self._opened_at is None or self._held_reported:
            return None
        return self._opened_at + self.held_open_s
