"""Door alarms from the lock window and the contact, on a driven clock."""

from __future__ import annotations

from gateway.access.doors import DoorEvent, DoorMachine


def kinds(events: list[DoorEvent]) -> list[str]:
    return [e.kind for e in events]


def machine() -> DoorMachine:
    door = DoorMachine("door-a", held_open_s=30)
    door.contact(False, 0.0)  # the first report only sets the state
    return door


def test_normal_entry_opens_and_closes_without_alarm() -> None:
    door = machine()
    door.unlocked(3.0, 10.0)
    assert kinds(door.contact(True, 11.0)) == ["open"]
    assert kinds(door.tick(40.9)) == []
    assert kinds(door.contact(False, 15.0)) == ["closed"]
    assert door.next_deadline() is None and kinds(door.tick(100.0)) == []


def test_opening_without_a_grant_is_forced() -> None:
    door = machine()
    assert kinds(door.contact(True, 5.0)) == ["forced"]


def test_opening_after_the_unlock_window_is_forced() -> None:
    door = machine()
    door.unlocked(3.0, 10.0)
    assert kinds(door.contact(True, 13.0)) == ["forced"]


def test_held_open_is_raised_once_per_opening_when_due() -> None:
    door = machine()
    door.unlocked(3.0, 10.0)
    door.contact(True, 11.0)
    assert door.next_deadline() == 41.0
    assert kinds(door.tick(40.99)) == []
    assert kinds(door.tick(41.0)) == ["held_open"]
    assert kinds(door.tick(80.0)) == []
    assert kinds(door.contact(False, 90.0)) == ["closed"]
    door.unlocked(3.0, 100.0)
    door.contact(True, 101.0)
    assert kinds(door.tick(131.0)) == ["held_open"]


def test_repeated_reports_and_a_door_open_at_start_raise_nothing() -> None:
    door = DoorMachine("door-a", held_open_s=30)
    assert kinds(door.contact(True, 0.0)) == ["open"]
    assert kinds(door.contact(True, 1.0)) == []
    assert kinds(door.contact(False, 2.0)) == ["closed"]
    assert kinds(door.contact(False, 3.0)) == []
