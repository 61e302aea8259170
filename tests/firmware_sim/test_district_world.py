"""The simulated world and its ground truth, without a server."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from firmware_sim.district import score, truth
from firmware_sim.district.activity import day_swipes
from firmware_sim.district.world import DAY, build_world
from server.registry.idnumber import parse_id_number
from server.rules import CityRules


def test_same_seed_same_world_and_swipes() -> None:
    a, b = build_world(buildings=5, days=20, seed=11), build_world(buildings=5, days=20, seed=11)
    assert [p.id_number for p in a.people] == [p.id_number for p in b.people]
    assert day_swipes(a, 3) == day_swipes(b, 3)
    assert [p.id_number for p in build_world(buildings=5, days=20, seed=12).people] != [p.id_number
                                                                                        for p in a.people]


def test_people_have_valid_unique_identity_numbers() -> None:
    world = build_world(buildings=20, days=30, seed=7)
    numbers = [p.id_number for p in world.people]
    assert len(set(numbers)) == len(numbers)
    for n in numbers:
        parse_id_number(n)  # raises if the check character or the date is wrong


def test_units_are_not_crowded_unless_scripted() -> None:
    world = build_world(buildings=40, days=10, seed=7)
    units = [u for b in world.buildings for u in b.units]
    assert all(u.slots <= u.capacity for u in units if u.area_m2 >= 14)
    assert any(u.slots > u.capacity for u in units)  # some small units are overcrowded


def test_residents_swipe_about_twice_a_day() -> None:
    world = build_world(buildings=20, days=14, seed=7)
    reads = sum(len(day_swipes(world, d)) for d in range(14))
    living = sum(1 for s in world.stays() if s.arrive < world.end and (s.depart is None or s.depart > world.start))
    assert 1.3 * living * 14 < reads < 2.6 * living * 14


def test_a_visitor_and_an_unregistered_short_stay_are_no_incidents() -> None:
    world = build_world(buildings=3, days=20, seed=1)
    stay = world.stays()[0]
    stay.before_start, stay.registered_at, stay.move = False, None, ""
    stay.arrive = world.start + DAY
    stay.depart = stay.arrive + timedelta(days=2)  # gone before the 3-day deadline
    assert not [i for i in truth.incidents(world, CityRules()) if i.unit == stay.unit and i.person == stay.person
                and i.kind == "unregistered_occupant"]
    stay.depart = stay.arrive + timedelta(days=5)
    found = [i for i in truth.incidents(world, CityRules()) if i.person == stay.person
             and i.kind == "unregistered_occupant"]
    assert [i.start for i in found] == [stay.arrive]


def test_a_case_counts_only_for_the_incident_it_points_at() -> None:
    start = build_world(buildings=1, days=5, seed=1).start
    incident = truth.Incident("presumed_departure", start, ("presumed_departure", "address_mismatch"),
                              unit="b0001-101", person=3, registration_id=9)
    case = score.SeenCase(1, "presumed_departure", start + timedelta(days=31), None, "b0001-101", 0, 3, 9, None)
    early = score.SeenCase(2, "presumed_departure", start - DAY, None, "b0001-101", 0, 3, 9, None)
    other = score.SeenCase(3, "presumed_departure", start + timedelta(days=31), None, "b0001-101", 0, 3, 8, None)
    units = {"b0001-101": 0}
    assert score.matches(case, incident, units)
    assert not score.matches(early, incident, units)
    assert not score.matches(other, incident, units)
    result = score.score([case, other], [incident], CityRules(), start + timedelta(days=60), units)
    k = result["presumed_departure"]
    assert (k["precision"], k["recall"], k["median_delay_days"]) == (0.5, 1.0, 31.0)


def test_a_run_ending_today_starts_at_a_local_midnight_and_ends_at_the_next_one() -> None:
    from datetime import datetime

    from firmware_sim.district.world import ZONE, start_ending_today

    # 01:30 in Guangzhou is still the evening before in UTC: days are local days.
    now = datetime(2026, 12, 4, 17, 30, tzinfo=ZoneInfo("UTC"))
    start = start_ending_today(90, now)
    assert start == datetime(2026, 9, 6, tzinfo=ZONE)
    world = build_world(buildings=2, days=90, seed=7, start=start)
    assert world.end == datetime(2026, 12, 5, tzinfo=ZONE) and world.end - now.astimezone(ZONE) < timedelta(days=1)
    assert all(s.arrive < world.end for s in world.stays())
