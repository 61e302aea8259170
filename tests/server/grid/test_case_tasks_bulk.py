"""The sweep's tasks for many cases at once (server/grid/case_tasks.py
create_case_tasks, set-based since the first sweep of a city opens about
100,000 cases): one task and one first trail row per new field-work case,
none for the cases that had a task, none again on the next sweep."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from server.db.models import cases, task_events, tasks
from server.grid.case_tasks import create_case_tasks
from server.grid.cases import escalate_case
from server.web.transactions import write_transaction
from tests.server.grid.scene import T0, Scene, at

FIELD_KINDS = ("unregistered_occupant", "address_mismatch", "overcrowding", "unknown_credential")


def _many_cases(scene: Scene, n: int) -> list[int]:
    """``n`` open field-work cases spread over the units and kinds, in one statement."""
    unit_codes = sorted(scene.units)
    rows = [{"kind": FIELD_KINDS[i % len(FIELD_KINDS)], "subject": f"bulk/{i}", "state": "open",
             "building_id": scene.buildings[unit_codes[i % len(unit_codes)][:2]],
             "unit_id": scene.units[unit_codes[i % len(unit_codes)]], "evidence": {}, "opened_at": T0,
             "updated_at": T0} for i in range(n)]
    with write_transaction(scene.engine) as conn:
        return list(conn.execute(sa.insert(cases).returning(cases.c.id), rows).scalars())


def _trail(conn: sa.Connection) -> Counter[tuple[int, str]]:
    return Counter(conn.execute(sa.select(task_events.c.task_id, task_events.c.action)).tuples().all())


def test_many_new_cases_get_one_task_and_one_trail_row_each_and_never_a_second(scene: Scene) -> None:
    new = _many_cases(scene, 250)
    escalated = scene.case("G2-101", "overcrowding")
    with write_transaction(scene.engine) as conn:
        escalated_task = escalate_case(conn, T0, "user:9", scene.rules, escalated, "seen by the neighbours")
    unused = scene.case("G1-102", "credential_unused")
    resolved = scene.case("G1-101", "unregistered_occupant", state="resolved")
    with write_transaction(scene.engine) as conn:
        before = _trail(conn)
        assert create_case_tasks(conn, at(1), scene.rules) == len(new)
        # The same moment again, in the same transaction: nothing more.
        assert create_case_tasks(conn, at(1), scene.rules) == 0
    with scene.engine.connect() as conn:
        made = conn.execute(sa.select(tasks.c.id, tasks.c.case_id, tasks.c.kind, tasks.c.state, tasks.c.due_at,
                                      tasks.c.grid_id, tasks.c.created_by)
                            .where(tasks.c.id != escalated_task).order_by(tasks.c.id)).all()
        kinds = dict(conn.execute(sa.select(cases.c.id, cases.c.kind)).tuples().all())
        trail = _trail(conn)
    assert [r.case_id for r in made] == sorted(new)  # one task per case, made in case order
    assert all(r.kind == kinds[r.case_id] and r.state == "reported" and r.due_at == at(2)
               and r.created_by == "system:reconcile" and r.grid_id is not None for r in made)
    assert {r.case_id for r in made}.isdisjoint({escalated, unused, resolved})
    # Exactly one first trail row per new task; the escalated task's trail untouched.
    assert trail - before == Counter({(r.id, "reported"): 1 for r in made})
    assert trail[(escalated_task, "reported")] == 1 and trail[(escalated_task, "escalated")] == 1
    with write_transaction(scene.engine) as conn:
        assert create_case_tasks(conn, at(2), scene.rules) == 0  # the next sweep
    with scene.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tasks)).scalar_one() == len(new) + 1
        assert _trail(conn) == trail


def test_a_case_opened_after_the_first_sweep_gets_its_task_on_the_next(scene: Scene) -> None:
    first = _many_cases(scene, 3)
    with write_transaction(scene.engine) as conn:
        assert create_case_tasks(conn, at(1), scene.rules) == 3
    later = scene.case("G3-102", "address_mismatch", now=at(1.5))
    with write_transaction(scene.engine) as conn:
        assert create_case_tasks(conn, at(2), scene.rules) == 1
    with scene.engine.connect() as conn:
        rows = conn.execute(sa.select(tasks.c.case_id, tasks.c.created_at).order_by(tasks.c.id)).tuples().all()
        trail = _trail(conn)
    assert rows == [(c, at(1)) for c in sorted(first)] + [(later, at(2))]
    assert sorted(trail.values()) == [1, 1, 1, 1]
