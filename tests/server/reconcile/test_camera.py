"""Unit door cameras as evidence: crossings folded into per-unit camera days,
and the unregistered-occupant and overcrowding rules fed by them, on SQLite
and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.db.models import camera_days, doors, events, gateways
from server.reconcile.runner import Reconciler
from server.rules import CityRules
from tests.server.reconcile.world import T0, World, day

_seq = itertools.count(100_000)


def map_door(world: World, building_id: int, unit_id: int | None, door: str = "unit-door", *,
             gateway: str | None = None) -> None:
    with world.engine.begin() as conn:
        conn.execute(sa.insert(doors).values(gateway_id=gateway or f"gw-{building_id}", door=door,
                                             building_id=building_id, unit_id=unit_id, camera=True,
                                             created_at=T0, updated_at=T0))


def camera_unit(world: World) -> tuple[int, int]:
    """A building with one unit whose door has a counting camera: (building, unit)."""
    b = world.building()
    u = world.unit(b)
    map_door(world, b, u)
    return b, u


def crossing(world: World, building_id: int, at: datetime, kind: str = "unidentified_entry", *,
             direction: str = "in", door: str = "unit-door") -> None:
    data: dict[str, Any] = {"track": next(_seq) % 1000}
    if kind == "people_crossing":
        data["direction"] = direction
    elif kind == "tailgating":
        data |= {"entered": 2, "granted": 1}
    with world.engine.begin() as conn:
        conn.execute(sa.insert(events).values(
            gateway_id=f"gw-{building_id}", seq=next(_seq), kind=kind, device="cam-1", door=door, occurred_at=at,
            received_at=at, stored_at=at, data=data))


def evening(world: World, building_id: int, n: int, d: float, people: int) -> None:
    """Day ``d``: ``people`` go out in the morning and come home in the
    evening, the last ``n - people`` of them... (n: how many come in)."""
    for k in range(people):
        crossing(world, building_id, day(d) + timedelta(minutes=k), "people_crossing", direction="out")
    for k in range(n):
        crossing(world, building_id, day(d) + timedelta(hours=9, minutes=k), "people_crossing")


def rows(world: World) -> list[dict[str, Any]]:
    with world.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(camera_days).order_by(camera_days.c.day)).mappings()]


def test_the_running_count_is_clamped_at_zero_peaks_and_starts_again_each_camera_day(world: World) -> None:
    b, u = camera_unit(world)
    # 10:00 local: out (nobody counted inside yet: stays 0), in, in, out, in.
    for i, (kind, direction) in enumerate((("people_crossing", "out"), ("people_crossing", "in"),
                                           ("unidentified_entry", "in"), ("people_crossing", "out"),
                                           ("tailgating", "in"))):
        crossing(world, b, day(0) + timedelta(minutes=i), kind, direction=direction)
    # 03:00 local the next night still belongs to day 0 (days begin at 04:00);
    # 05:00 begins day 1, whose count starts from 0.
    crossing(world, b, day(0) + timedelta(hours=17), "people_crossing")
    crossing(world, b, day(0) + timedelta(hours=19), "people_crossing", direction="out")
    world.reconciler.catch_up(day(1))
    first, second = rows(world)
    assert (first["entered"], first["exited"], first["unidentified"], first["tailgating"]) == (4, 2, 1, 1)
    assert (first["level"], first["peak"]) == (3, 3)
    assert second["day"] == first["day"] + 1 and (second["level"], second["peak"], second["exited"]) == (0, 0, 1)


def test_crossings_count_only_at_a_unit_door_of_the_gateways_building(world: World) -> None:
    b, other = world.building("B"), world.building("O")
    u = world.unit(b)
    map_door(world, b, None, "entrance")  # the building's entrance: no unit
    map_door(world, b, u, "moved")
    with world.engine.begin() as conn:  # the gateway now sits in another building
        conn.execute(sa.update(gateways).where(gateways.c.id == f"gw-{b}").values(building_id=other))
    crossing(world, b, day(0), door="entrance")
    crossing(world, b, day(0), door="moved")
    crossing(world, b, day(0), door="unmapped")
    world.reconciler.catch_up(day(1))
    assert rows(world) == []


def test_unidentified_entries_on_enough_days_open_one_camera_case(world: World) -> None:
    b, u = camera_unit(world)
    world.register(world.person(), u, card="00000000AA")
    for d in range(4):
        crossing(world, b, day(d) + timedelta(hours=8))
        crossing(world, b, day(d) + timedelta(hours=9), "tailgating")
    world.sweep(day(6))
    (case,) = world.open_cases("unregistered_occupant")
    assert case["unit_id"] == u and case["person_id"] is None and case["subject"] == f"u{u}/camera"
    evidence = case["evidence"]
    assert evidence["source"] == "camera" and evidence["days"] == 4
    assert (evidence["entries"], evidence["tailgating"]) == (4, 4)
    # The next sweep finds the same case open, not a second one.
    world.sweep(day(6.5))
    assert [c["id"] for c in world.open_cases("unregistered_occupant")] == [case["id"]]


def test_fewer_days_than_camera_min_days_open_nothing(world: World) -> None:
    b, u = camera_unit(world)
    for d in range(3):
        for k in range(5):  # many entries on each day: still three days
            crossing(world, b, day(d) + timedelta(minutes=k))
    world.sweep(day(6))
    assert world.open_cases() == []


def test_registering_someone_closes_the_camera_case_and_earlier_days_do_not_reopen_it(world: World) -> None:
    b, u = camera_unit(world)
    for d in range(5):
        crossing(world, b, day(d))
    world.sweep(day(6))
    (case,) = world.open_cases("unregistered_occupant")
    world.register(world.person("found"), u, at=day(6.2), card="00000000BB")
    world.sweep(day(7))
    assert world.open_cases() == []
    assert world.case(case["id"])["resolution"] == "registered"


def test_a_registered_occupant_without_a_card_explains_the_entries(world: World) -> None:
    b, u = camera_unit(world)
    world.register(world.person("no card"), u, at=day(-10))
    for d in range(6):
        crossing(world, b, day(d))
    world.sweep(day(8))
    assert world.open_cases() == []


def test_card_evidence_of_an_unregistered_person_is_the_one_case_of_the_unit(world: World) -> None:
    b, u = camera_unit(world)
    world.card(u, "00000000CC")  # an anonymous card, used daily
    world.reads(b, "00000000CC", 0, 6)
    for d in range(6):
        crossing(world, b, day(d) + timedelta(hours=1))
    world.sweep(day(7))
    (case,) = world.open_cases("unregistered_occupant")
    assert case["subject"] != f"u{u}/camera" and case["credential_id"] is not None


def test_camera_occupancy_over_capacity_opens_overcrowding(world: World) -> None:
    b = world.building()
    u = world.unit(b, capacity=2)
    map_door(world, b, u)
    world.register(world.person(), u, card="00000000DD", at=day(-30))
    for d in range(6):
        evening(world, b, 3, d, people=3)
    world.sweep(day(7))
    (case,) = world.open_cases("overcrowding")
    assert case["unit_id"] == u
    assert case["evidence"]["occupants"] == 3 and case["evidence"]["camera_estimate"] == 3
    assert case["evidence"]["counted"] == 1 and case["evidence"]["capacity"] == 2


def test_camera_occupancy_within_capacity_opens_nothing(world: World) -> None:
    b = world.building()
    u = world.unit(b, capacity=2)
    map_door(world, b, u)
    world.register(world.person(), u, card="00000000EE", at=day(-30))
    for d in range(6):
        evening(world, b, 2, d, people=2)
    # One night of five is a party: the median is not moved by it.
    evening(world, b, 6, 6, people=2)
    world.sweep(day(8))
    assert world.open_cases("overcrowding") == []


def test_weight_zero_turns_camera_evidence_off(engine: sa.Engine) -> None:
    world = World(engine, CityRules(camera_evidence_weight=0))
    world.areas()
    b = world.building()
    u = world.unit(b, capacity=2)
    map_door(world, b, u)
    world.register(world.person(), u, card="00000000FF", at=day(-30))
    for d in range(6):
        evening(world, b, 3, d, people=3)
        crossing(world, b, day(d) + timedelta(hours=2))
    world.sweep(day(7))
    assert world.open_cases("unregistered_occupant") == world.open_cases("overcrowding") == []
    assert rows(world) == []  # not even folded
    # The same events with the weight back at 1 open both cases.
    Reconciler(engine, CityRules()).sweep(day(7))
    assert len(world.open_cases("unregistered_occupant")) == len(world.open_cases("overcrowding")) == 1


def test_a_half_weight_needs_twice_the_days(engine: sa.Engine) -> None:
    world = World(engine, CityRules(camera_evidence_weight=0.5))
    world.areas()
    b, u = camera_unit(world)
    for d in range(7):
        crossing(world, b, day(d))
    world.sweep(day(8))
    assert world.open_cases() == []  # 7 days x 0.5 < 4
    crossing(world, b, day(8))
    world.sweep(day(9))
    assert len(world.open_cases("unregistered_occupant")) == 1


def test_the_sweep_deletes_camera_days_no_rule_reads_any_more(world: World) -> None:
    """Kept twice the longer of the silence period (30 days) and the camera
    window (14): a day 61 days before the sweep goes, one 59 days before stays."""
    b, u = camera_unit(world)
    crossing(world, b, day(0) + timedelta(hours=8))
    crossing(world, b, day(2) + timedelta(hours=8))
    world.reconciler.catch_up(day(3))
    assert len(rows(world)) == 2
    world.sweep(day(61))
    (kept,) = rows(world)
    assert kept["first_at"] == day(2) + timedelta(hours=8)
