"""The controller at a door: decisions from the local list, the unlock
window they open, anti-passback, and held-open alarms as they fall due."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.access.config import AccessConfig, AntiPassbackPair
from gateway.access.controller import AccessController
from gateway.access.doors import DoorEvent
from tests.gateway.access.helpers import T0, card, delta, open_store, snapshot


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.t)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def controller(tmp_path: Path, clock: FakeClock, **config: object) -> AccessController:
    store = open_store(tmp_path)
    store.apply(snapshot(1, "AA", "BB"))
    return AccessController(store, AccessConfig.model_validate(config), clock)


def test_a_grant_opens_the_door_and_an_unknown_card_does_not(tmp_path: Path, clock: FakeClock) -> None:
    access = controller(tmp_path, clock, unlock_pulse_ms=2000)
    access.contact("door-a", False)
    denied = access.decide("reader-a", "door-a", card("ZZ"))
    assert (denied.granted, denied.reason) == (False, "unknown")
    clock.t += 0.5
    assert [e.kind for e in access.contact("door-a", True)] == ["forced"]
    access.contact("door-a", False)
    granted = access.decide("reader-a", "door-a", card("AA"))
    assert (granted.granted, granted.person) == (True, "p-AA")
    clock.t += 1.9
    assert [e.kind for e in access.contact("door-a", True)] == ["open"]


def test_a_revoked_card_is_denied_as_revoked(tmp_path: Path, clock: FakeClock) -> None:
    access = controller(tmp_path, clock)
    access.store.apply(delta(1, 2, removals=("AA",)))
    assert access.decide("reader-a", "door-a", card("AA")).reason == "revoked"


def test_anti_passback_between_an_entry_and_an_exit(tmp_path: Path, clock: FakeClock) -> None:
    access = controller(tmp_path, clock, anti_passback=[{"entry": "in", "exit": "out", "forget_after_s": 3600}])
    assert access.decide("r1", "in", card("AA")).granted
    assert access.decide("r1", "in", card("AA")).reason == "anti_passback"
    assert access.decide("r1", "in", card("BB")).granted  # someone else
    assert access.decide("r2", "out", card("AA")).granted
    assert access.decide("r2", "out", card("AA")).reason == "anti_passback"
    assert access.decide("r3", "lobby", card("AA")).granted  # not in a pair
    clock.t += 3600
    assert access.decide("r2", "out", card("AA")).granted  # forgotten


async def test_watch_doors_raises_held_open_when_due(tmp_path: Path) -> None:
    access = AccessController(open_store(tmp_path), AccessConfig(held_open_s=0.05))
    seen: list[DoorEvent] = []
    raised = asyncio.Event()

    def emit(event: DoorEvent) -> None:
        seen.append(event)
        raised.set()

    watcher = asyncio.create_task(access.watch_doors(emit), name="watch-doors")
    try:
        access.contact("door-a", False)
        access.unlocked("door-a")
        access.contact("door-a", True)
        await asyncio.wait_for(raised.wait(), 5)
    finally:
        watcher.cancel()
    assert [(e.door, e.kind) for e in seen] == [("door-a", "held_open")]


def test_config_rejects_unknown_keys_bad_keys_and_overlapping_pairs() -> None:
    from pydantic import ValidationError

    for bad in ({"held_open": 3}, {"public_keys": {"k1": "nope"}},
                {"anti_passback": [{"entry": "a", "exit": "a"}]},
                {"anti_passback": [{"entry": "a", "exit": "b"}, {"entry": "b", "exit": "c"}]}):
        with pytest.raises(ValidationError):
            AccessConfig.model_validate(bad)
    assert AccessConfig.model_validate({}).unlock_pulse_s == 3.0
    assert AntiPassbackPair(entry="a", exit="b").forget_after_s is None
