"""Cases become tasks: the sweep makes one task per new field-work case
(and never a second), notes a closing case on its task (archiving one
nobody had picked up), the unanswered departure gives a verify_departure
task through the same code; escalating a case hands it to the dispatcher."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from server.db.models import cases, history, task_events, tasks
from server.grid import service
from server.grid.cases import escalate_case
from server.grid.errors import GridConflict, GridInputError, GridNotFound
from server.grid.scope import grid_ids_of
from server.web.transactions import write_transaction
from tests.server.grid.scene import T0, Scene, at
from tests.server.reconcile.world import World, day


def _tasks(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(tasks).order_by(tasks.c.id)).mappings()]


def _events(engine: sa.Engine, task_id: int) -> list[tuple[str, str | None, str | None, str | None]]:
    with engine.connect() as conn:
        return [(r[0], r[1], r[2], r[3]) for r in conn.execute(
            sa.select(task_events.c.action, task_events.c.from_state, task_events.c.to_state, task_events.c.note)
            .where(task_events.c.task_id == task_id).order_by(task_events.c.id)).all()]


def _unregistered(world: World) -> tuple[int, int, int]:
    b = world.building(grid="G1")
    u = world.unit(b)
    p = world.person()
    world.card(u, "C1", person_id=p)
    world.reads(b, "C1", 0, 2)
    return b, u, p


def test_the_sweep_gives_a_new_case_one_task_and_archives_it_when_the_case_clears(world: World) -> None:
    _, u, p = _unregistered(world)
    world.sweep(day(3))
    [case] = world.open_cases("unregistered_occupant")
    [task] = _tasks(world.engine)
    assert (task["kind"], task["source"], task["state"], task["case_id"]) == (
        "unregistered_occupant", "case", "reported", case["id"])
    assert task["grid_id"] == world.grids["G1"] and task["unit_id"] == u and task["due_at"] == day(4)
    assert task["summary"].startswith(f"Case {case['id']}: Someone lives here without")
    assert _events(world.engine, task["id"]) == [("reported", None, "reported", None)]
    world.sweep(day(3.5))
    assert len(_tasks(world.engine)) == 1  # one task per case, however many sweeps
    world.register(p, u, at=day(3))
    world.sweep(day(4))
    [task] = _tasks(world.engine)
    assert task["state"] == "archived" and task["closed_at"] == day(4) and task["due_at"] is None
    assert _events(world.engine, task["id"])[-1] == ("case_closed", "reported", "archived", "auto_closed: registered")


def test_a_dispatched_task_keeps_going_when_its_case_closes_and_hears_of_it(world: World) -> None:
    _, u, p = _unregistered(world)
    world.sweep(day(3))
    [task] = _tasks(world.engine)
    with write_transaction(world.engine) as conn:
        conn.execute(sa.update(tasks).where(tasks.c.id == task["id"]).values(state="dispatched"))
    world.register(p, u, at=day(3))
    world.sweep(day(4))
    world.sweep(day(5))
    [task] = _tasks(world.engine)
    assert task["state"] == "dispatched"
    assert [e for e in _events(world.engine, task["id"]) if e[0] == "case_closed"] == [
        ("case_closed", "dispatched", "dispatched", "auto_closed: registered")]


def test_which_kinds_get_tasks(world: World) -> None:
    """Overcrowding and unknown cards need a visit; a card never used is the
    landlord's question first; presumed departure waits for its answer."""
    b = world.building(grid="G2")
    u = world.unit(b, capacity=1)
    for n in range(2):
        world.register(world.person(), u, card=f"R{n}")  # two on a one-person unit, cards never used
    world.reads(b, "FFFF000001", 38, 2)  # a card nobody issued, lately
    world.sweep(day(40))
    opened = {c["kind"] for c in world.open_cases()}
    assert {"overcrowding", "unknown_credential", "credential_unused", "presumed_departure"} <= opened
    made = {(t["kind"], t["grid_id"]) for t in _tasks(world.engine)}
    assert made == {("overcrowding", world.grids["G2"]), ("unknown_credential", world.grids["G2"])}


def test_an_unanswered_departure_gives_a_verify_task_through_create_task(world: World) -> None:
    b = world.building(grid="G1")
    u = world.unit(b)
    reg = world.register(world.person(), u, card="D1")
    world.reads(b, "D1", 0, 3)
    world.sweep(day(33))
    [case] = world.open_cases("presumed_departure")
    world.sweep(day(41))
    [task] = _tasks(world.engine)
    assert (task["kind"], task["source"], task["case_id"], task["grid_id"]) == (
        "verify_departure", "case", case["id"], world.grids["G1"])
    assert task["due_at"] == day(42) and task["created_by"] == "system:reconcile"
    assert f"Registration {reg} ended" in task["summary"]
    assert _events(world.engine, task["id"]) == [("reported", None, "reported", None)]
    world.sweep(day(42))  # its case closed before it was made: no "case closed" note
    assert _events(world.engine, task["id"]) == [("reported", None, "reported", None)]


def test_an_escalated_departure_keeps_its_one_task_when_it_expires(world: World) -> None:
    b = world.building(grid="G1")
    u = world.unit(b)
    world.register(world.person(), u, card="D1")
    world.reads(b, "D1", 0, 3)
    world.sweep(day(33))
    [case] = world.open_cases("presumed_departure")
    with write_transaction(world.engine) as conn:
        task_id = escalate_case(conn, day(34), "user:1", world.rules, case["id"], "landlord unreachable")
    world.sweep(day(41))
    [task] = _tasks(world.engine)
    assert task["id"] == task_id and task["state"] == "reported"  # escalated: not archived with the case
    notes = [e for e in _events(world.engine, task_id) if e[0] == "case_closed"]
    assert len(notes) == 1 and "verify the departure" in (notes[0][3] or "")


# --------------------------------------------------------------------------- escalation


def test_escalating_a_case_without_a_task_makes_one_flagged_for_the_dispatcher(scene: Scene) -> None:
    case_id = scene.case("G1-102", "address_mismatch")
    with write_transaction(scene.engine) as conn:
        task_id = escalate_case(conn, T0, "user:9", scene.rules, case_id, "  seen twice this week ")
    task = scene.row(task_id)
    assert (task["state"], task["source"], task["kind"], task["case_id"]) == (
        "reported", "case", "address_mismatch", case_id)
    assert task["escalated_at"] == T0 and task["grid_id"] == scene.grids["G1"] and task["due_at"] == at(1)
    assert _events(scene.engine, task_id) == [("reported", None, "reported", None),
                                              ("escalated", "reported", "reported", "seen twice this week")]
    with scene.engine.connect() as conn:
        audit = [(r[0], r[1]) for r in conn.execute(sa.select(history.c.action, history.c.changes).where(
            history.c.entity == "case", history.c.entity_id == case_id))]
        listed, _ = service.list_tasks(conn, T0, service.actor_facts(conn, scene.auth("admin")),
                                       service.TaskQuery(escalated=True, state="reported"))
    assert audit == [("escalated", {"task_id": task_id, "note": "seen twice this week"})]
    assert [t["id"] for t in listed] == [task_id]


def test_escalating_again_reuses_the_task_and_brings_it_back_to_dispatch(scene: Scene) -> None:
    case_id = scene.case()
    with write_transaction(scene.engine) as conn:
        task_id = escalate_case(conn, T0, "user:9", scene.rules, case_id, None)
    scene.act("admin", task_id, "dispatch", at(0.1), assignee_user_id=scene.users["chen"].id)
    scene.act("chen", task_id, "handle", at(0.2), note="talked to them")
    with write_transaction(scene.engine) as conn:
        again = escalate_case(conn, at(2), "user:9", scene.rules, case_id, "still crowded")
    task = scene.row(task_id)
    assert again == task_id
    assert (task["state"], task["assignee_user_id"], task["due_at"], task["escalated_at"]) == (
        "reported", None, at(3), at(2))
    assert _events(scene.engine, task_id)[-1] == ("escalated", "handled", "reported", "still crowded")
    # A new trip through the steps can start.
    scene.act("chen", task_id, "claim", at(2.1))


def test_escalation_refuses_what_cannot_be_escalated(sqlite_scene: Scene) -> None:
    scene = sqlite_scene
    closed, other = scene.case(state="resolved"), scene.case()
    with write_transaction(scene.engine) as conn:
        with pytest.raises(GridNotFound):
            escalate_case(conn, T0, "user:9", scene.rules, 999_999, None)
        with pytest.raises(GridConflict, match="resolved"):
            escalate_case(conn, T0, "user:9", scene.rules, closed, None)
        with pytest.raises(GridInputError, match="2000"):
            escalate_case(conn, T0, "user:9", scene.rules, other, "x" * 2001)
        assert conn.execute(sa.select(sa.func.count()).select_from(cases)).scalar_one() == 2
        assert grid_ids_of(conn, scene.users["chen"].id) == frozenset({scene.grids["G1"]})


def test_a_dismissed_case_task_is_not_recreated_by_the_sweep(sqlite_scene: Scene) -> None:
    from server.grid.case_tasks import create_case_tasks

    scene = sqlite_scene
    case_id = scene.case()
    with write_transaction(scene.engine) as conn:
        assert create_case_tasks(conn, T0, scene.rules) == 1
    [task] = _tasks(scene.engine)
    scene.act("admin", task["id"], "dismiss", at(0.1), reason="no_action_needed", note="owner's family")
    with write_transaction(scene.engine) as conn:
        assert create_case_tasks(conn, at(1), scene.rules) == 0
        # Escalating makes a new one: the dismissed task stays archived.
        new = escalate_case(conn, at(2), "user:9", scene.rules, case_id, "it is not the family")
    assert new != task["id"] and scene.row(task["id"])["state"] == "archived"
