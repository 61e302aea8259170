"""A simulated door behind each simulated OSDP reader: a lock that obeys the
reader's relay output, a door contact wired to one of its inputs, and the
person at the door.

The lock is unlocked while the relay output is on, as the output-control
commands the reader receives say (their timer honoured). The person presents
a card and pushes the door only if the lock opens within ``push_within_s`` of
the presentation; otherwise they leave and the door stays shut. Everything the
door does is logged with monotonic timestamps (:meth:`SimDoor.contact_log`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from firmware_sim.errors import SimError
from firmware_sim.osdp_reader import ReceivedCommand, SimOsdpReader

log = logging.getLogger(__name__)

OUTPUT_TIMER_UNIT_S = 0.1

# OSDP output control codes (IEC 60839-11-5, osdp_OUT).
_PERMANENT_OFF_ABORT = 1
_PERMANENT_ON_ABORT = 2
_PERMANENT_OFF_AFTER_TIMER = 3
_PERMANENT_ON_AFTER_TIMER = 4
_TEMPORARY_ON = 5
_TEMPORARY_OFF = 6


class LockModel:
    """One relay output as OSDP defines it: a permanent state and an optional
    timed (temporary) state that overrides it until its timer runs out.
    Relay on means unlocked. Pure: time comes in as arguments."""

    def __init__(self) -> None:
        self._permanent = False
        self._temporary: tuple[bool, float] | None = None  # (state, until)

    def apply(self, control_code: int, timer_count: int, now: float) -> None:
        self._expire(now)
        if control_code in (_PERMANENT_OFF_ABORT, _PERMANENT_ON_ABORT):
            self._permanent = control_code == _PERMANENT_ON_ABORT
            self._temporary = None
        elif control_code in (_PERMANENT_OFF_AFTER_TIMER, _PERMANENT_ON_AFTER_TIMER):
            self._permanent = control_code == _PERMANENT_ON_AFTER_TIMER
        elif control_code in (_TEMPORARY_ON, _TEMPORARY_OFF):
            self._temporary = (control_code == _TEMPORARY_ON, now + timer_count * OUTPUT_TIMER_UNIT_S)
        # 0 (no-op) and codes we do not know leave the relay as it is, as a reader would.

    def unlocked(self, now: float) -> bool:
        self._expire(now)
        return self._temporary[0] if self._temporary is not None else self._permanent

    def _expire(self, now: float) -> None:
        if self._temporary is not None and now >= self._temporary[1]:
            self._temporary = None


@dataclass(frozen=True, kw_only=True)
class PersonModel:
    """How a person at the door behaves: push the door if the lock opens
    within ``push_within_s`` of presenting the card, keep it open for a time
    between ``open_s_min`` and ``open_s_max``."""

    push_within_s: float = 1.0
    open_s_min: float = 2.0
    open_s_max: float = 4.0

    def __post_init__(self) -> None:
        if self.push_within_s <= 0 or not 0 < self.open_s_min <= self.open_s_max:
            raise SimError(f"person model out of range: {self}")


@dataclass(frozen=True, kw_only=True)
class ContactChange:
    at: float  # time.monotonic()
    open: bool


class SimDoor:
    """A door behind ``reader``: its lock follows output ``relay_output``, its
    contact is reported on input ``contact_input``. Call :meth:`start` once
    the reader is on its line, so the controller learns the door is shut."""

    def __init__(self, door_id: str, reader: SimOsdpReader, *, relay_output: int = 0, contact_input: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if relay_output >= reader.caps.outputs:
            raise SimError(f"door {door_id}: reader {reader.address} has no output {relay_output}")
        if contact_input >= reader.caps.inputs:
            raise SimError(f"door {door_id}: reader {reader.address} has no input {contact_input}")
        self.door_id = door_id
        self.reader = reader
        self.relay_output = relay_output
        self.contact_input = contact_input
        self._clock = clock
        self._cond = threading.Condition()
        self._lock_model = LockModel()
        self._relay_commands = 0
        self._stop = threading.Event()
        self._open = False
        self._contacts: list[ContactChange] = []
        reader.add_command_listener(self._on_command)

    # ------------------------------------------------------------------ state

    @property
    def unlocked(self) -> bool:
        with self._cond:
            return self._lock_model.unlocked(self._clock())

    @property
    def is_open(self) -> bool:
        with self._cond:
            return self._open

    @property
    def relay_commands(self) -> int:
        """How many commands for the relay output the reader has received."""
        with self._cond:
            return self._relay_commands

    def contact_log(self) -> list[ContactChange]:
        with self._cond:
            return list(self._contacts)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._report_contact(False)

    def interrupt(self) -> None:
        """Cut every wait short: the simulation is stopping."""
        with self._cond:
            self._stop.set()
            self._cond.notify_all()

    @property
    def interrupted(self) -> bool:
        return self._stop.is_set()

    def pause(self, seconds: float) -> bool:
        """Wait; False if interrupted first."""
        return not self._stop.wait(max(0.0, seconds))

    # ------------------------------------------------------------------ the lock

    def wait_for_unlock(self, *, after: int, timeout: float) -> bool:
        """Wait until a relay command newer than the ``after``-th one has the
        lock unlocked; an unlock already running does not count, so a person
        never walks through the previous person's unlock."""
        deadline = self._clock() + timeout

        def ready() -> bool:
            return self._stop.is_set() or (self._relay_commands > after and self._lock_model.unlocked(self._clock()))

        with self._cond:
            while not ready():
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return not self._stop.is_set()

    def _on_command(self, command: ReceivedCommand) -> None:
        # On libosdp's thread with its lock held: update the model and wake waiters only.
        if command.kind != "output" or command.fields.get("output_no") != self.relay_output:
            return
        code, timer = command.fields.get("control_code"), command.fields.get("timer_count", 0)
        if not isinstance(code, int) or not isinstance(timer, int):
            return
        with self._cond:
            self._lock_model.apply(code, timer, self._clock())
            self._relay_commands += 1
            self._cond.notify_all()

    # ------------------------------------------------------------------ the contact

    def open_door(self) -> None:
        self._report_contact(True)

    def close_door(self) -> None:
        self._report_contact(False)

    def _report_contact(self, is_open: bool) -> None:
        inputs = [False] * self.reader.caps.inputs
        inputs[self.contact_input] = is_open
        with self._cond:
            self._open = is_open
            self._contacts.append(ContactChange(at=self._clock(), open=is_open))
        self.reader.set_inputs(*inputs)

    def hold_open(self, seconds: float) -> None:
        """Open the door, keep it open (unless interrupted), close it."""
        self.open_door()
        try:
            self.pause(seconds)
        finally:
            self.close_door()

    # ------------------------------------------------------------------ the person

    def present(self, facility: int, card: int) -> int:
        """Present a card; returns the relay command count to wait beyond."""
        before = self.relay_commands
        self.reader.present(facility, card)
        return before

    def enter(self, facility: int, card: int, *, person: PersonModel, open_s: float) -> bool:
        """Present a card; push the door and keep it open ``open_s`` if the
        lock opens in time. True if the person went through."""
        before = self.present(facility, card)
        if not self.wait_for_unlock(after=before, timeout=person.push_within_s):
            log.debug("door %s: not unlocked for card %d:%d, the person leaves", self.door_id, facility, card)
            return False
        self.hold_open(open_s)
        return True
