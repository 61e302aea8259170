"""Each case kind opens at the right time and not before, and closes when its
condition clears."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from server.db.models import credentials, presence, registrations, tasks
from tests.server.reconcile.world import World, day

SECOND = timedelta(seconds=1)


def test_unregistered_occupant_opens_at_the_deadline_and_closes_when_registered(world: World) -> None:
    b = world.building(grid="G1")
    u = world.unit(b)
    p = world.person()
    world.card(u, "C1", person_id=p)
    world.reads(b, "C1", 0, 2)  # two local days: an occupant, first seen at day 0
    world.sweep(day(3) - SECOND)
    assert world.open_cases("unregistered_occupant") == []
    world.sweep(day(3))
    [case] = world.open_cases("unregistered_occupant")
    assert case["subject"] == f"u{u}/p{p}" and case["person_id"] == p and case["unit_id"] == u
    world.sweep(day(3) + SECOND)  # a second sweep does not open a second case
    assert len(world.open_cases()) == 1
    world.register(p, u, at=day(3))
    world.sweep(day(4))
    assert world.open_cases() == []
    assert world.case(case["id"])["resolution"] == "registered"


def test_a_card_without_person_is_its_own_subject(world: World) -> None:
    b = world.building()
    u = world.unit(b)
    cred = world.card(u, "C9")
    world.reads(b, "C9", 0, 3)
    world.sweep(day(5))
    [case] = world.open_cases("unregistered_occupant")
    assert case["subject"] == f"u{u}/c{cred}"


def test_a_one_day_visitor_never_opens_a_case(world: World) -> None:
    b = world.building()
    u = world.unit(b)
    world.card(u, "V1", person_id=world.person())
    for hour in range(0, 10, 2):  # many reads, but on one local day
        world.read(b, "V1", day(0) + timedelta(hours=hour))
    world.sweep(day(10))
    assert world.open_cases() == []


def test_occupant_registered_elsewhere_is_an_address_mismatch_not_unregistered(world: World) -> None:
    home = world.unit(world.building("home"))
    b = world.building("elsewhere")
    there = world.unit(b)
    p = world.person()
    reg = world.register(p, home)
    world.card(there, "M1", person_id=p)
    world.reads(b, "M1", 0, 4)
    world.sweep(day(4))
    assert world.open_cases("unregistered_occupant") == []
    [case] = world.open_cases("address_mismatch")
    assert case["subject"] == f"p{p}" and case["registration_id"] == reg and case["unit_id"] == there


def test_presumed_departure_chain_ends_the_registration_without_an_answer(world: World) -> None:
    b = world.building(grid="G1")
    u = world.unit(b)
    p = world.person()
    reg = world.register(p, u, card="D1")
    world.reads(b, "D1", 0, 3)  # last evidence: day 2
    world.sweep(day(32) - SECOND)
    assert world.open_cases("presumed_departure") == []
    world.sweep(day(32) + SECOND)
    [case] = world.open_cases("presumed_departure")
    assert case["subject"] == f"r{reg}" and case["evidence_at"] == day(2)
    assert case["due_at"] == day(39) + SECOND
    result = world.sweep(day(39))
    assert result.ended_registrations == [] and len(world.open_cases("presumed_departure")) == 1
    result = world.sweep(day(39) + SECOND)
    assert result.ended_registrations == [reg]
    assert [c.gateway_id for c in result.changes] == [f"gw-{b}"]
    with world.engine.connect() as conn:
        status, ended_at, reason = conn.execute(sa.select(
            registrations.c.status, registrations.c.ended_at, registrations.c.end_reason)
            .where(registrations.c.id == reg)).one()
        revoked = conn.execute(sa.select(credentials.c.revoked_at).where(credentials.c.value == "D1")).scalar_one()
        task = conn.execute(sa.select(tasks)).mappings().one()
    assert (status, ended_at, reason) == ("ended", day(2), "presumed_departure")
    assert revoked is not None
    assert task["kind"] == "verify_departure" and task["state"] == "reported"
    assert task["grid_id"] == world.grids["G1"] and task["case_id"] == case["id"]
    assert world.case(case["id"])["state"] == "auto_closed"


def test_being_seen_again_closes_a_presumed_departure_at_once(world: World) -> None:
    b = world.building()
    u = world.unit(b)
    reg = world.register(world.person(), u, card="S1")
    world.sweep(day(31))
    [case] = world.open_cases("presumed_departure")
    assert case["registration_id"] == reg
    world.read(b, "S1", day(32))
    world.reconciler.catch_up(day(32))  # the incremental path, no sweep
    assert world.case(case["id"])["resolution"] == "seen_again"
    assert world.open_cases("presumed_departure") == []


def test_registrations_without_credentials_are_not_judged(world: World) -> None:
    world.register(world.person(), world.unit(world.building()))
    world.sweep(day(100))
    assert world.open_cases("presumed_departure") == []


def test_overcrowding_counts_registered_and_evidenced_occupants(world: World) -> None:
    b = world.building()
    u = world.unit(b, capacity=2)
    world.register(world.person(), u)
    world.register(world.person(), u)
    world.sweep(day(1))
    assert world.open_cases("overcrowding") == []
    world.card(u, "O1", person_id=world.person())
    world.reads(b, "O1", 0, 2)
    world.sweep(day(2))
    [case] = world.open_cases("overcrowding")
    assert case["subject"] == f"u{u}" and case["evidence"]["occupants"] == 3
    world.sweep(day(40))  # the third has not been seen for the silence period
    assert world.open_cases("overcrowding") == []


def test_unknown_credential_opens_at_once_and_closes_when_issued(world: World) -> None:
    b = world.building()
    u = world.unit(b)
    world.read(b, "FFFF", day(0))
    world.reconciler.catch_up(day(0))
    [case] = world.open_cases("unknown_credential")
    assert case["subject"] == f"b{b}/em4100/FFFF"
    world.card(u, "FFFF", at=day(1))
    world.sweep(day(1))
    assert world.open_cases("unknown_credential") == []
    assert world.case(case["id"])["resolution"] == "registered"


def test_events_from_gateways_without_building_are_skipped(world: World) -> None:
    with world.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO gateways (id, first_seen, last_seen, max_seq) "
                             "VALUES ('loose', '2024-01-01', '2024-01-01', 0)"))
    world.read(0, "X", day(0), gateway="loose")
    assert world.reconciler.catch_up(day(0)) == 1
    assert world.reconciler.totals.no_building == 1
    assert world.open_cases() == []


def test_credential_never_used_opens_after_the_period_and_closes_when_seen(world: World) -> None:
    b = world.building()
    u = world.unit(b)
    world.register(world.person(), u, card="N1")
    world.sweep(day(30) - SECOND)
    assert world.open_cases("credential_unused") == []
    world.sweep(day(30))
    [case] = world.open_cases("credential_unused")
    world.read(b, "N1", day(30) + SECOND)
    world.sweep(day(30) + 2 * SECOND)
    assert world.case(case["id"])["resolution"] == "seen_again"


def test_presence_counts_distinct_local_days(world: World) -> None:
    b = world.building()
    u = world.unit(b)
    p = world.person()
    world.card(u, "L1", person_id=p)
    # 23:30 and 00:30 Shanghai time are two local days though one UTC day.
    world.read(b, "L1", day(0) + timedelta(hours=13, minutes=30))
    world.read(b, "L1", day(0) + timedelta(hours=14, minutes=30))
    world.read(b, "L1", day(0) + timedelta(hours=15))
    world.reconciler.catch_up(day(1))
    with world.engine.connect() as conn:
        row = conn.execute(sa.select(presence.c.days_seen, presence.c.events)).one()
    assert tuple(row) == (2, 3)


def _end(world: World, registration_id: int, at: object) -> None:
    """What deregistering does: the registration ends, its cards are revoked."""
    with world.engine.begin() as conn:
        conn.execute(sa.update(registrations).where(registrations.c.id == registration_id)
                     .values(status="ended", ended_at=at, end_reason="deregistered"))
        conn.execute(sa.update(credentials).where(credentials.c.registration_id == registration_id)
                     .values(revoked_at=at, revoked_reason="registration_ended"))


def test_a_deregistered_tenant_who_left_is_not_an_unregistered_occupant(world: World) -> None:
    """Found by the district simulator: evidence from the tenancy outlived it."""
    b = world.building()
    u = world.unit(b)
    p = world.person()
    reg = world.register(p, u, card="T1")
    world.reads(b, "T1", 0, 10)
    _end(world, reg, day(9) + timedelta(hours=8))
    for at in (day(12), day(13), day(20)):
        world.sweep(at)
    assert world.open_cases() == []


def test_a_card_handed_back_before_the_deadline_opens_nothing(world: World) -> None:
    b = world.building()
    u = world.unit(b)
    cred = world.card(u, "G1", person_id=world.person())
    world.reads(b, "G1", 0, 2)
    with world.engine.begin() as conn:
        conn.execute(sa.update(credentials).where(credentials.c.id == cred).values(revoked_at=day(2.3)))
    world.sweep(day(3.5))
    world.sweep(day(10))
    assert world.open_cases() == []


def test_a_proper_move_is_neither_a_mismatch_nor_unregistered(world: World) -> None:
    old_b, new_b = world.building("old"), world.building("new")
    old, new = world.unit(old_b), world.unit(new_b)
    p = world.person()
    first = world.register(p, old, card="A1")
    world.reads(old_b, "A1", 0, 10)
    _end(world, first, day(10))
    world.register(p, new, at=day(10), card="B1")
    world.reads(new_b, "B1", 10, 5)
    for at in (day(12), day(14), day(16)):
        world.sweep(at)
    assert world.open_cases() == []


def test_a_deregistered_tenant_who_stays_with_a_new_card_is_found_after_the_deadline(world: World) -> None:
    b = world.building()
    u = world.unit(b)
    p = world.person()
    reg = world.register(p, u, card="T2")
    world.reads(b, "T2", 0, 5)
    _end(world, reg, day(5))
    world.card(u, "T3", person_id=p, at=day(5))  # the landlord hands over a new card, unregistered
    world.reads(b, "T3", 5, 6)
    world.sweep(day(7.5))
    assert world.open_cases() == []  # within the deadline counted from the ending
    world.sweep(day(8.5))
    [case] = world.open_cases("unregistered_occupant")
    assert case["person_id"] == p
