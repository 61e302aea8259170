"""From a case to grid work: escalating a case (a coordinator on the unit
page, or an administrator) hands it to the grid's dispatcher.

Semantics (docs/grid.md, "Escalating a case"):
- the case must be open or acknowledged; its state does not change (closing
  it stays the job of resolve_case / the sweep);
- the case's task that is not archived is reused, else a new task is created
  (source "case", kind = the case's kind, at 上报 reported);
- an escalated task is flagged (``tasks.escalated_at``) so the dispatch view
  lists it first, and if it had already left 上报 (dispatched, handled,
  verified or evaluated) it goes back to 上报 for re-dispatch: the assignee
  and any evaluation are cleared and the 上报 deadline starts again, because
  whatever was done so far did not settle the case;
- the task's trail gets an "escalated" row with the note, and the case's
  history an "escalated" row naming the task.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from server.db.models import OPEN_CASE_STATES, cases, tasks
from server.grid.errors import GridConflict, GridNotFound
from server.grid.tasks import CASE_TASK_SUMMARY, add_event, clean_note, create_task, step_due
from server.registry import history as trail
from server.rules import CityRules


def open_task_of_case(conn: sa.Connection, case_id: int, *, lock: bool = False) -> sa.RowMapping | None:
    """The case's task that is not archived, if any (there is at most one)."""
    query = sa.select(tasks).where(tasks.c.case_id == case_id, tasks.c.state != "archived")
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).mappings().first()


def case_summary(case_id: int, kind: str) -> str:
    return f"Case {case_id}: {CASE_TASK_SUMMARY.get(kind, kind)}"


def escalate_case(conn: sa.Connection, now: datetime, actor: str, rules: CityRules, case_id: int,
                  note: str | None) -> int:
    """The id of the task that now carries the case (see the module's doc).
    Runs in the caller's transaction; the caller checks who may escalate."""
    note = clean_note(note)
    if not 0 < case_id < 2**63:
        raise GridNotFound("case", case_id)
    query = sa.select(cases.c.id, cases.c.kind, cases.c.state, cases.c.unit_id, cases.c.building_id
                      ).where(cases.c.id == case_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # two escalations of one case: the second reuses the first's task
    case = conn.execute(query).mappings().first()
    if case is None:
        raise GridNotFound("case", case_id)
    if case["state"] not in OPEN_CASE_STATES:
        raise GridConflict(f"case {case_id} is already {case['state']}")
    task = open_task_of_case(conn, case_id, lock=True)
    if task is None:
        task_id = create_task(conn, now, actor, rules, kind=case["kind"], source="case",
                              summary=case_summary(case_id, case["kind"]), unit_id=case["unit_id"],
                              building_id=case["building_id"], case_id=case_id)
        before = "reported"
    else:
        task_id, before = int(task["id"]), str(task["state"])
    due = step_due(rules, "reported", now)
    values: dict[str, object] = {"escalated_at": now, "updated_at": now}
    if before != "reported":
        # Sent back for re-dispatch: whatever was done did not settle the case.
        values |= {"state": "reported", "assignee_user_id": None, "evaluation": None, "evaluation_note": None,
                   "due_at": due}
    conn.execute(sa.update(tasks).where(tasks.c.id == task_id).values(**values))
    # A task already waiting at 上报 keeps its deadline; one sent back starts again.
    event_due = task["due_at"] if task is not None and before == "reported" else due
    add_event(conn, now, actor, task_id, "escalated", from_state=before, to_state="reported", note=note,
              due_at=event_due)
    trail.record(conn, now, actor, "case", case_id, "escalated", {"task_id": task_id, "note": note})
    return task_id
