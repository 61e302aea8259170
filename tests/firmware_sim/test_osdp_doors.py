"""Simulated OSDP doors: locks that obey the relay, contacts, people and the
scripted incidents, with the gateway's own OSDP driver as the control panel
on a real pty."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from devices.osdp import OsdpLine, ReaderSpec
from firmware_sim.config import OsdpBuildingConfig
from firmware_sim.doors import LockModel, PersonModel, SimDoor
from firmware_sim.osdp_building import OsdpBuildingSim
from firmware_sim.osdp_reader import SimOsdpLine
from rentgate import wire
from tests.devices.helpers import wait_until

QUICK = PersonModel(push_within_s=1.0, open_s_min=0.2, open_s_max=0.3)
# Someone the panel lets in: on a loaded 2-core machine the panel may answer a
# second after the swipe, and a person who waits only 1 s would have gone.
# What these tests check is the door's behaviour, not the panel's latency.
PATIENT = PersonModel(push_within_s=5.0, open_s_min=0.2, open_s_max=0.3)
PULSE_MS = 1000


class Panel:
    """A control panel that grants ``allowed`` cards with an unlock pulse and
    records the door contacts it hears (as the gateway would)."""

    def __init__(self, pts: str, addresses: list[int], allowed: set[str]) -> None:
        self.allowed = allowed
        self._lock = threading.Lock()
        self.cards: list[tuple[int, str]] = []
        self.inputs: list[tuple[int, bool]] = []
        self.line = OsdpLine(pts, channel_id=1, readers=[ReaderSpec(address=a) for a in addresses],
                             on_card=self._on_card, on_status=lambda *_: None, on_input=self._on_input)

    def _on_card(self, address: int, credential: wire.Credential) -> None:
        with self._lock:
            self.cards.append((address, credential.value))
        if credential.value in self.allowed:
            self.line.pulse_output(address, 0, PULSE_MS)

    def _on_input(self, address: int, input_no: int, active: bool) -> None:
        if input_no == 0:
            with self._lock:
                self.inputs.append((address, active))

    def contacts(self, address: int) -> list[bool]:
        with self._lock:
            return [active for a, active in self.inputs if a == address]


@contextmanager
def panel(pts: str, addresses: list[int], allowed: Collection[str] = ()) -> Iterator[Panel]:
    p = Panel(pts, addresses, set(allowed))
    p.line.start()
    try:
        wait_until(lambda: all(p.line.is_online(a) for a in addresses), what="readers online")
        yield p
    finally:
        p.line.stop()


@pytest.fixture
def line() -> Iterator[SimOsdpLine]:
    with SimOsdpLine() as sim:
        yield sim


# ---------------------------------------------------------------------- the lock, pure


def test_a_pulse_unlocks_for_its_timer_then_the_permanent_state_returns() -> None:
    lock = LockModel()
    assert not lock.unlocked(0.0)
    lock.apply(5, 30, now=10.0)  # temporary on, 3 s
    assert lock.unlocked(10.0) and lock.unlocked(12.9)
    assert not lock.unlocked(13.0)


def test_permanent_states_and_aborts() -> None:
    lock = LockModel()
    lock.apply(2, 0, now=0.0)  # permanently on (unlocked, e.g. a fire alarm)
    lock.apply(6, 10, now=1.0)  # a timed off overrides it for 1 s
    assert not lock.unlocked(1.5) and lock.unlocked(2.0)
    lock.apply(5, 50, now=3.0)
    lock.apply(1, 0, now=3.5)  # permanently off, timer aborted
    assert not lock.unlocked(3.6)
    lock.apply(5, 50, now=4.0)
    lock.apply(3, 0, now=4.5)  # off, but the running pulse completes
    assert lock.unlocked(8.9) and not lock.unlocked(9.0)
    lock.apply(0, 0, now=10.0)  # a no-op changes nothing
    assert not lock.unlocked(10.0)


# ---------------------------------------------------------------------- doors and people


def test_pulsing_the_relay_opens_the_lock_window_and_it_closes_again(line: SimOsdpLine) -> None:
    door = SimDoor("front", line.add_reader(1))
    with panel(line.pts, [1]) as p:
        assert not door.unlocked
        # Long enough that a stalled test thread still sees the lock released.
        assert p.line.pulse_output(1, 0, 3000)
        wait_until(lambda: door.unlocked, what="the lock released")
        wait_until(lambda: not door.unlocked, 10, what="the lock engaged again")
        assert door.relay_commands == 1
        assert not door.is_open  # an unlock alone opens no door


def test_a_granted_card_opens_and_closes_the_door_a_denied_one_does_not(line: SimOsdpLine) -> None:
    front, back = SimDoor("front", line.add_reader(1)), SimDoor("back", line.add_reader(2))
    front.start()
    back.start()
    with panel(line.pts, [1, 2], allowed={"90:324"}) as p:
        assert front.enter(90, 324, person=PATIENT, open_s=0.3) is True
        started = time.monotonic()
        assert back.enter(90, 999, person=QUICK, open_s=0.3) is False
        assert time.monotonic() - started >= QUICK.push_within_s  # waited, then left
        wait_until(lambda: p.contacts(1) == [False, True, False], what="front opened and closed")
        wait_until(lambda: len(p.cards) == 2, what="both cards read at the panel")
        assert sorted(p.cards) == [(1, "90:324"), (2, "90:999")]
        assert p.contacts(2) == [False]  # only the initial "closed"
        assert [c.open for c in back.contact_log()] == [False]
        opened, closed = front.contact_log()[1:]
        assert 0.3 <= closed.at - opened.at < 1.0


def test_an_unlock_for_the_previous_person_does_not_let_the_next_one_in(line: SimOsdpLine) -> None:
    door = SimDoor("front", line.add_reader(1))
    door.start()
    with panel(line.pts, [1], allowed={"90:1"}) as p:
        assert p.line.pulse_output(1, 0, 3000)
        wait_until(lambda: door.unlocked, what="the earlier unlock")
        assert door.enter(90, 2, person=PersonModel(push_within_s=0.5), open_s=0.2) is False
        assert not any(c.open for c in door.contact_log())


def test_without_a_control_panel_nobody_gets_in() -> None:
    with SimOsdpLine() as sim:
        door = SimDoor("front", sim.add_reader(1))
        door.start()
        assert door.enter(1, 1, person=PersonModel(push_within_s=0.2), open_s=0.2) is False
        assert [c.open for c in door.contact_log()] == [False]


# ---------------------------------------------------------------------- scripted building runs


def building(script: list[dict[str, Any]], **overrides: Any) -> OsdpBuildingConfig:
    raw: dict[str, Any] = {
        "name": "t", "held_open_s": 0.5,
        "lines": [{"id": "l1"}],
        "doors": [{"id": "front", "line": "l1", "address": 1}, {"id": "back", "line": "l1", "address": 2}],
        "tenants": {"cards": ["90:324", "90:325"]},
        "traffic": {"pattern": "none"},
        # Patient people (see PATIENT): the script's entries must not fail
        # because a loaded machine's panel answered after a second.
        "person": {"open_s_min": 0.2, "open_s_max": 0.3, "push_within_s": 5.0},
        "script": script,
    }
    raw.update(overrides)
    return OsdpBuildingConfig.model_validate(raw)


def test_a_script_of_incidents_produces_the_contact_sequences_and_the_expected_list() -> None:
    config = building([
        {"at_s": 0.0, "door": "front", "action": "enter", "card": "90:324"},
        {"at_s": 0.0, "door": "back", "action": "forced", "open_s": 0.3},
        {"at_s": 0.7, "door": "back", "action": "revoked", "card": "90:777"},
        {"at_s": 1.0, "door": "front", "action": "held_open", "card": "90:325", "open_s": 0.8},
    ])
    with OsdpBuildingSim(config) as sim, panel(sim.pts()["l1"], [1, 2], allowed={"90:324", "90:325"}) as p:
        sim.start()
        assert sim.wait(15)
        wait_until(lambda: len(p.contacts(1)) == 5 and len(p.contacts(2)) == 3, what="every contact change")
        record = sim.record()
    assert p.contacts(1) == [False, True, False, True, False]  # two entries
    assert p.contacts(2) == [False, True, False]  # forced; the revoked card opened nothing
    assert sim.doors["back"].relay_commands == 0  # forced: never unlocked
    held = sim.doors["front"].contact_log()[3:]
    assert held[1].at - held[0].at > config.held_open_s
    assert sorted(record.expected, key=str) == sorted([
        ("front", "granted", "90:324"), ("back", "forced", None), ("back", "denied", "90:777"),
        ("front", "granted", "90:325"), ("front", "held_open", None)], key=str)
    by_action = {a.action: a for a in record.actions}
    assert by_action["enter"].unlocked and by_action["held_open"].unlocked
    assert by_action["revoked"].unlocked is False
    assert by_action["forced"].took_s >= 0.3


def test_an_unplugged_reader_is_silent_then_works_again() -> None:
    config = building([
        {"at_s": 0.0, "door": "back", "action": "unplug", "unplugged_s": 0.5},
        {"at_s": 0.1, "door": "back", "action": "enter", "card": "90:324"},  # waits for the replug
    ])
    with OsdpBuildingSim(config) as sim, panel(sim.pts()["l1"], [1, 2], allowed={"90:324"}) as p:
        reader = sim.doors["back"].reader
        sim.start()
        wait_until(lambda: not reader.plugged, what="the unplug")
        assert sim.wait(15)
        assert reader.plugged
        wait_until(lambda: p.contacts(2) == [False, True, False], what="an entry after the replug")
        record = sim.record()
    assert [a.action for a in record.actions] == ["unplug", "enter"]
    assert record.actions[0].took_s >= 0.5 and record.actions[1].unlocked
    # Too short for libosdp to notice: no outage is expected.
    assert record.expected == [("back", "granted", "90:324")]


def test_normal_traffic_stops_at_the_total_and_stop_closes_an_open_door() -> None:
    # Three swipes at once on one line (patient people, as building() makes them).
    config = building([], traffic={"pattern": "burst", "total": 3, "burst_gap_s": 0.0})
    with OsdpBuildingSim(config) as sim, panel(sim.pts()["l1"], [1, 2], allowed={"90:324", "90:325"}):
        sim.start()
        assert sim.wait(15)
        record = sim.record()
    assert len(record.actions) == 3 and all(a.unlocked for a in record.actions)
    assert all(kind == "granted" and card in {"90:324", "90:325"} for _, kind, card in record.expected)

    held = building([{"at_s": 0.0, "door": "front", "action": "forced", "open_s": 600}])
    with OsdpBuildingSim(held) as sim:
        sim.start()
        wait_until(lambda: sim.doors["front"].is_open, what="the forced door open")
        started = time.monotonic()
        sim.stop()
        assert time.monotonic() - started < 2
        assert not sim.doors["front"].is_open
