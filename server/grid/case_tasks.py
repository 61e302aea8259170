"""Cases from reconciliation become tasks, set-based, inside the sweep's
transaction (docs/grid.md, "Cases become tasks").

- Every open case of a kind that needs someone at the door (FIELD_KINDS)
  and that never had a task gets one: source "case", kind = the case's kind,
  at 上报 with its deadline, one INSERT ... SELECT for the tasks and one for
  their first trail rows, whatever the number (the first sweep of a city
  opens about 100,000 cases). "Never had a task" rather than "has no open
  task": a task the dispatcher dismissed must not come back every sweep;
  escalating the case makes a new one when it is really needed.
- credential_unused gets no task of its own: a card never used is first the
  landlord's question (the tenant may not have moved in yet), answered on
  the landlord's pages; a coordinator escalates it from the unit page when
  a visit is needed. presumed_departure likewise waits for the landlord's
  answer; only when it expires unanswered does the coordinator get a
  verify_departure task (``departure_task``).
- When a case closes (resolved by a person or auto_closed by the sweep) its
  task's trail gets a "case_closed" row saying how. A task still waiting at
  上报 (nobody dispatched, nobody escalated) is archived with it: there is no
  work left. A task already with a coordinator stays where it is, so they see
  the note and finish the step (e.g. handle: "registered meanwhile").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from server.db.models import tasks
from server.db.types import UtcDateTime
from server.grid.cases import open_task_of_case
from server.grid.tasks import CASE_TASK_SUMMARY, add_event, create_task, step_due
from server.rules import CityRules

ACTOR = "system:reconcile"
FIELD_KINDS = ("unregistered_occupant", "address_mismatch", "overcrowding", "unknown_credential")
CLOSED_CASE_SQL = "('resolved', 'auto_closed')"
# The rows of the tasks create_case_tasks is about to make.
_NEW_TASKS = "case_task_rows"


def _ts(name: str) -> sa.BindParameter[datetime]:
    return sa.bindparam(name, type_=UtcDateTime)


def _summary_sql() -> str:
    """case_summary(id, kind) in SQL, so the INSERT needs no per-row Python."""
    whens = " ".join(f"WHEN '{kind}' THEN '{text.replace(chr(39), chr(39) * 2)}'"
                     for kind, text in CASE_TASK_SUMMARY.items()
                     if kind in FIELD_KINDS)
    return f"'Case ' || CAST(c.id AS TEXT) || ': ' || CASE c.kind {whens} ELSE c.kind END"


def create_case_tasks(conn: sa.Connection, now: datetime, rules: CityRules) -> int:
    """A task for every open field-work case that never had one; how many.

    Three statements: the new tasks' rows into a temporary table, then the
    tasks from it, then their first trail rows. The tasks statement must not
    look for "never had a task" in ``tasks`` itself: on a city's first sweep
    ``tasks`` is empty when the statement is planned, so PostgreSQL probes it
    with a sequential scan per case, and that scan reads every page the same
    statement has written so far (invisible to it, but read), which made
    52,000 tasks take 44 s instead of about one (docs/reconcile.md)."""
    floor = int(conn.execute(sa.select(sa.func.max(tasks.c.id))).scalar() or 0)
    kinds = ", ".join(f"'{k}'" for k in FIELD_KINDS)
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {_NEW_TASKS}"))
    conn.execute(sa.text(f"""
CREATE TEMP TABLE {_NEW_TASKS} AS
SELECT c.id AS case_id, c.kind, b.grid_id, c.building_id, c.unit_id, {_summary_sql()} AS summary
FROM cases c LEFT JOIN buildings b ON b.id = c.building_id
WHERE c.state IN ('open', 'acknowledged') AND c.kind IN ({kinds})
  AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.case_id = c.id)"""))
    try:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"ANALYZE {_NEW_TASKS}"))  # its size, for the trail rows' join
        created = conn.execute(sa.text(f"""
INSERT INTO tasks (kind, state, source, created_by, case_id, grid_id, building_id, unit_id, summary,
                   created_at, updated_at, due_at)
SELECT n.kind, 'reported', 'case', :actor, n.case_id, n.grid_id, n.building_id, n.unit_id, n.summary,
       :now, :now, :due
FROM {_NEW_TASKS} n
ORDER BY n.case_id
ON CONFLICT DO NOTHING""").bindparams(_ts("now"), _ts("due")),
            {"actor": ACTOR, "now": now, "due": step_due(rules, "reported", now)}).rowcount
        if created:
            # The first trail row of each task just made: the tasks of those
            # cases above the floor that this actor made at this moment (a
            # task a person made for one of them meanwhile is not ours, and
            # ON CONFLICT skipped ours).
            conn.execute(sa.text(f"""
INSERT INTO task_events (task_id, at, actor, action, from_state, to_state, due_at)
SELECT t.id, :now, CAST(:actor AS VARCHAR(64)), 'reported', NULL, 'reported', t.due_at
FROM {_NEW_TASKS} n JOIN tasks t ON t.case_id = n.case_id
WHERE t.id > :floor AND t.created_by = :actor AND t.created_at = :now AND t.source = 'case'
ORDER BY t.id""").bindparams(_ts("now")), {"actor": ACTOR, "now": now, "floor": floor})
    finally:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {_NEW_TASKS}"))
    return int(created or 0)


def sync_closed_cases(conn: sa.Connection, now: datetime, *, case_ids: Sequence[int] | None = None,
                      actor: str = ACTOR) -> int:
    """Note closed cases on their open tasks and archive those still at 上报
    (see the module's doc); how many tasks were noted. ``case_ids``: only
    those cases (after a person resolves one), else every closed case.
    A task made for a case that was already closed (verify_departure) is
    not noted: its case closing is why it exists."""
    only = ""
    values: dict[str, object] = {"now": now, "actor": actor}
    if case_ids is not None:
        if not case_ids:
            return 0
        only = "AND c.id IN :case_ids"
        values["case_ids"] = list(case_ids)
    archive_now = "t.state = 'reported' AND t.escalated_at IS NULL"

    def bind(sql: str) -> sa.TextClause:
        stmt = sa.text(sql).bindparams(_ts("now"))
        return stmt.bindparams(sa.bindparam("case_ids", expanding=True)) if case_ids is not None else stmt

    noted = conn.execute(bind(f"""
INSERT INTO task_events (task_id, at, actor, action, from_state, to_state, note, due_at)
SELECT t.id, :now, :actor, 'case_closed', t.state, CASE WHEN {archive_now} THEN 'archived' ELSE t.state END,
       c.state || ': ' || COALESCE(c.resolution, ''), CASE WHEN {archive_now} THEN NULL ELSE t.due_at END
FROM tasks t JOIN cases c ON c.id = t.case_id
WHERE t.state <> 'archived' AND c.state IN {CLOSED_CASE_SQL} AND c.closed_at > t.created_at {only}
  AND NOT EXISTS (SELECT 1 FROM task_events e WHERE e.task_id = t.id AND e.action = 'case_closed')"""),
                         values).rowcount
    if noted:
        # Exactly the tasks the rows above sent to archived: the same
        # condition (every such task got its row in this statement or was
        # archived by an earlier one).
        conn.execute(bind(f"""
UPDATE tasks SET state = 'archived', closed_at = :now, due_at = NULL, updated_at = :now
WHERE state = 'reported' AND escalated_at IS NULL AND case_id IS NOT NULL
  AND EXISTS (SELECT 1 FROM cases c WHERE c.id = tasks.case_id AND c.state IN {CLOSED_CASE_SQL}
              AND c.closed_at > tasks.created_at {only})"""), values)
    return int(noted or 0)


def departure_task(conn: sa.Connection, now: datetime, rules: CityRules, *, case_id: int, registration_id: int,
                   evidence_at: datetime | None, unit_id: int | None, building_id: int | None,
                   grid_id: int | None) -> int:
    """A presumed departure expired unanswered and the registration ended:
    the coordinator verifies the departure. If the case already has an open
    task (it was escalated), that task gets the news on its trail instead of
    a second task (one open task per case)."""
    seen = (evidence_at or now).date().isoformat()
    summary = (f"Registration {registration_id} ended without the landlord's answer "
               f"(no evidence since {seen}): verify the departure.")
    existing = open_task_of_case(conn, case_id, lock=True)
    if existing is not None:
        state = str(existing["state"])
        add_event(conn, now, ACTOR, int(existing["id"]), "case_closed", from_state=state, to_state=state,
                  note=summary, due_at=existing["due_at"])
        return int(existing["id"])
    return create_task(conn, now, ACTOR, rules, kind="verify_departure", source="case", summary=summary,
                       unit_id=unit_id, building_id=building_id, case_id=case_id, grid_id=grid_id)
