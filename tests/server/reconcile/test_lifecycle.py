"""Case transitions and refusals, landlord answers, and the watermark's
exactly-once promise."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.db.models import history, presence, reconcile_state, registrations
from server.reconcile import cases as case_ops
from server.reconcile import evidence
from server.web.errors import Conflict, InvalidInput, NotFound
from server.web.transactions import write_transaction
from tests.server.reconcile.world import World, day


def _departure_case(world: World) -> tuple[int, int, int]:
    b = world.building()
    u = world.unit(b)
    reg = world.register(world.person(), u, card="A1")
    world.reads(b, "A1", 0, 2)
    world.sweep(day(40))
    [case] = world.open_cases("presumed_departure")
    return b, reg, int(case["id"])


def test_acknowledge_then_resolve_then_refuse_a_second_close(world: World) -> None:
    b = world.building()
    world.read(b, "UNK", day(0))
    world.reconciler.catch_up(day(0))
    [case] = world.open_cases("unknown_credential")
    with world.engine.begin() as conn:
        assert case_ops.acknowledge_case(conn, day(1), "user:1", case["id"])["state"] == "acknowledged"
        with pytest.raises(Conflict):
            case_ops.acknowledge_case(conn, day(1), "user:1", case["id"])
        done = case_ops.resolve_case(conn, day(2), "user:1", case["id"], resolution="false_alarm", note="a guest")
        assert (done["state"], done["resolution"]) == ("resolved", "false_alarm")
        with pytest.raises(Conflict):
            case_ops.resolve_case(conn, day(3), "user:1", case["id"], resolution="fixed")
        with pytest.raises(InvalidInput):
            case_ops.resolve_case(conn, day(3), "user:1", case["id"], resolution="because")
        with pytest.raises(NotFound):
            case_ops.acknowledge_case(conn, day(3), "user:1", 999_999)
        trail = case_ops.get_case(conn, case["id"])["history"]
    assert [h["action"] for h in trail] == ["opened", "acknowledged", "resolved"]
    assert trail[1]["actor"] == "user:1"


def test_landlord_answers_still_living_and_silence_restarts(world: World) -> None:
    _, reg, case_id = _departure_case(world)
    with world.engine.begin() as conn:
        outcome = case_ops.answer_departure(conn, day(41), "user:7", case_id, still_living=True)
    assert outcome.body["resolution"] == "still_resident" and outcome.changes == []
    world.sweep(day(70))  # 29 days after the answer
    assert world.open_cases("presumed_departure") == []
    world.sweep(day(71) + timedelta(seconds=1))
    [again] = world.open_cases("presumed_departure")
    assert again["registration_id"] == reg and again["id"] != case_id


def test_landlord_confirms_departure(world: World) -> None:
    _, reg, case_id = _departure_case(world)
    with world.engine.begin() as conn:
        outcome = case_ops.answer_departure(conn, day(41), "user:7", case_id, still_living=False,
                                            departed_at=day(5))
        with pytest.raises(Conflict):
            case_ops.resolve_case(conn, day(41), "user:7", case_id, resolution="fixed")
        status, ended_at = conn.execute(sa.select(registrations.c.status, registrations.c.ended_at)
                                        .where(registrations.c.id == reg)).one()
    assert outcome.body["resolution"] == "departure_confirmed" and outcome.changes
    assert (status, ended_at) == ("ended", day(5))


def test_a_departure_case_is_answered_not_resolved(world: World) -> None:
    _, _, case_id = _departure_case(world)
    with world.engine.begin() as conn, pytest.raises(Conflict):
        case_ops.resolve_case(conn, day(41), "user:1", case_id, resolution="fixed")


def test_exactly_once_across_a_crash(world: World) -> None:
    b = world.building()
    u = world.unit(b)
    world.card(u, "E1", person_id=world.person())
    for d in range(5):
        world.read(b, "E1", day(d))

    class Crash(Exception):
        pass

    # The presence rows were written, then the process died before commit.
    with pytest.raises(Crash), write_transaction(world.engine) as conn:
        evidence.apply_chunk(conn, day(5), world.rules, limit=100)
        raise Crash
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(presence)).scalar() == 0
    assert world.reconciler.catch_up(day(5)) == 5
    assert world.reconciler.catch_up(day(5)) == 0  # nothing twice
    world.read(b, "E1", day(5))
    assert world.reconciler.catch_up(day(6)) == 1
    with world.engine.connect() as conn:
        events, days_seen = conn.execute(sa.select(presence.c.events, presence.c.days_seen)).one()
        mark = conn.execute(sa.select(reconcile_state.c.last_event_id)
                            .where(reconcile_state.c.name == "events")).scalar_one()
    assert (events, days_seen, mark) == (6, 6, 6)


def test_small_chunks_give_the_same_presence(world: World) -> None:
    world.reconciler.chunk_events = 2
    b = world.building()
    u = world.unit(b)
    world.card(u, "K1", person_id=world.person())
    for d in range(7):
        world.read(b, "K1", day(d))
    assert world.reconciler.catch_up(day(7)) == 7
    with world.engine.connect() as conn:
        assert tuple(conn.execute(sa.select(presence.c.events, presence.c.days_seen)).one()) == (7, 7)


def test_every_case_change_is_in_history(world: World) -> None:
    b = world.building()
    world.unit(b)
    world.read(b, "H1", day(0))
    world.sweep(day(0))
    world.sweep(day(40))  # unseen for the silence period: auto-closed
    with world.engine.connect() as conn:
        actions = conn.execute(sa.select(history.c.action).where(history.c.entity == "case")
                               .order_by(history.c.id)).scalars().all()
    assert actions == ["opened", "auto_closed"]
