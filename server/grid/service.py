"""Tasks in the database: taking a workflow action (one transaction, the
task row locked so that two concurrent actions cannot both win), a task
with its trail, and the lists (by grid, assignee, state, overdue) with
keyset paging. The rules themselves are in server/grid/workflow.py.

Who sees a task: administrators every task; a coordinator the tasks of
their grids and any task assigned to them; nobody else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from server.db.models import TASK_STATES, areas, buildings, cases, grid_coordinators, task_events, tasks, units, users
from server.grid import workflow
from server.grid.errors import GridConflict, GridInputError, GridNotFound, NotPermitted
from server.grid.scope import grid_ids_of
from server.grid.tasks import add_event, step_due
from server.rules import CityRules

if TYPE_CHECKING:
    from server.auth.policy import AuthUser

JsonObj = dict[str, Any]
MAX_LIMIT = 500
MAX_ID = 2**63 - 1
SORTS = ("new", "due")
# Filters a list takes besides the states themselves: "open" is every state
# but archived.
STATE_FILTERS = (*TASK_STATES, "open")


@dataclass(frozen=True)
class ActionInput:
    assignee_user_id: int | None = None
    note: str | None = None
    evaluation: str | None = None
    reason: str | None = None


def actor_facts(conn: sa.Connection, user: AuthUser) -> workflow.Actor:
    grids = grid_ids_of(conn, user.id) if user.role == "coordinator" else frozenset()
    return workflow.Actor(user.id, user.role, grids)


def may_see(task: sa.RowMapping | JsonObj, actor: workflow.Actor) -> bool:
    if actor.role == "admin":
        return True
    if actor.role != "coordinator":
        return False
    return task["assignee_user_id"] == actor.user_id or (task["grid_id"] is not None
                                                         and task["grid_id"] in actor.grid_ids)


def _user_id_of(actor: str) -> int | None:
    kind, _, ident = actor.partition(":")
    return int(ident) if kind == "user" and ident.isdigit() else None


def handled_by(conn: sa.Connection, task_id: int) -> int | None:
    """The user who recorded the task's last handling, for four-eyes."""
    actor = conn.execute(sa.select(task_events.c.actor).where(task_events.c.task_id == task_id,
                                                              task_events.c.action == "handle")
                         .order_by(task_events.c.id.desc()).limit(1)).scalar()
    return _user_id_of(actor) if actor is not None else None


def facts(conn: sa.Connection, task: sa.RowMapping) -> workflow.TaskFacts:
    return workflow.TaskFacts(task["state"], task["grid_id"], task["assignee_user_id"],
                              handled_by(conn, int(task["id"])))


def _candidate(conn: sa.Connection, user_id: int) -> workflow.Candidate:
    if not 0 < user_id <= MAX_ID:
        raise GridInputError("assignee", "no such user")
    row = conn.execute(sa.select(users.c.role, users.c.disabled_at).where(users.c.id == user_id)).first()
    if row is None:
        raise GridInputError("assignee", "no such user")
    grids = grid_ids_of(conn, user_id) if row.role == "coordinator" else frozenset()
    return workflow.Candidate(user_id, str(row.role), grids, row.disabled_at is not None)


def _load(conn: sa.Connection, task_id: int, *, lock: bool = False) -> sa.RowMapping:
    if not 0 < task_id <= MAX_ID:  # a number no BIGINT holds names no task (and must not reach SQL)
        raise GridNotFound("task", task_id)
    query = sa.select(tasks).where(tasks.c.id == task_id)
    if lock and conn.dialect.name == "postgresql":
        # Two concurrent actions on one task: the second waits here and then
        # sees the first one's state (SQLite's BEGIN IMMEDIATE serialises).
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise GridNotFound("task", task_id)
    return row


def apply_action(conn: sa.Connection, now: datetime, rules: CityRules, user: AuthUser, task_id: int,
                 action: str, given: ActionInput) -> JsonObj:
    """Take ``action`` on the task in the caller's transaction; the task as
    ``task_json`` afterwards. Raises GridNotFound, NotPermitted,
    IllegalTransition, GridInputError."""
    task = _load(conn, task_id, lock=True)
    actor = actor_facts(conn, user)
    if not may_see(task, actor):
        raise NotPermitted("not a task of your grids")
    candidate = _candidate(conn, given.assignee_user_id) if given.assignee_user_id is not None else None
    step = workflow.plan(action, facts(conn, task), actor,
                         workflow.Request(candidate, given.note, given.evaluation, given.reason))
    due = step_due(rules, step.to_state, now) if step.new_deadline else task["due_at"]
    values: dict[str, Any] = {"state": step.to_state, "assignee_user_id": step.assignee_user_id, "due_at": due,
                              "updated_at": now}
    if step.to_state == "archived":
        values["closed_at"] = now
    if action in ("dispatch", "claim", "dismiss"):
        values["escalated_at"] = None  # the dispatcher has acted on the flag
    if action == "evaluate":
        values |= {"evaluation": step.evaluation, "evaluation_note": step.evaluation_note}
    changed = conn.execute(sa.update(tasks).where(tasks.c.id == task_id, tasks.c.state == step.from_state)
                           .values(**values)).rowcount
    if changed != 1:  # pragma: no cover - the lock (or BEGIN IMMEDIATE) makes this unreachable
        raise GridConflict(f"task {task_id} changed meanwhile; reload it")
    add_event(conn, now, f"user:{user.id}", task_id, action, from_state=step.from_state, to_state=step.to_state,
              assignee_user_id=step.assignee_user_id, note=step.note, due_at=due)
    return task_json(conn, now, task_id)


# --------------------------------------------------------------------------- reading


_ASSIGNEE = users.alias("assignee")


def _columns() -> list[Any]:
    u, b, a, asg = units.c, buildings.c, areas.c, _ASSIGNEE.c
    return [*tasks.c, u.number.label("unit_number"), b.name.label("building_name"),
            b.address.label("building_address"), a.code.label("grid_code"), a.name.label("grid_name"),
            asg.username.label("assignee_username"), asg.display_name.label("assignee_name")]


def _from() -> sa.Join:
    return (tasks.outerjoin(units, units.c.id == tasks.c.unit_id)
            .outerjoin(buildings, buildings.c.id == tasks.c.building_id)
            .outerjoin(areas, areas.c.id == tasks.c.grid_id)
            .outerjoin(_ASSIGNEE, _ASSIGNEE.c.id == tasks.c.assignee_user_id))


def _doc(row: sa.RowMapping, now: datetime) -> JsonObj:
    doc = dict(row)
    doc["overdue"] = row["state"] != "archived" and row["due_at"] is not None and row["due_at"] < now
    return doc


def task_json(conn: sa.Connection, now: datetime, task_id: int) -> JsonObj:
    row = conn.execute(sa.select(*_columns()).select_from(_from()).where(tasks.c.id == task_id)).mappings().first()
    if row is None:
        raise GridNotFound("task", task_id)
    return _doc(row, now)


def trail(conn: sa.Connection, task_id: int) -> list[JsonObj]:
    """The task's audit trail, oldest first, with people's names resolved."""
    e = task_events.c
    rows = [dict(r) for r in conn.execute(
        sa.select(e.id, e.at, e.actor, e.action, e.from_state, e.to_state, e.assignee_user_id, e.note, e.due_at)
        .where(e.task_id == task_id).order_by(e.id)).mappings()]
    ids = {i for r in rows for i in (_user_id_of(r["actor"]), r["assignee_user_id"]) if i is not None}
    names = dict(conn.execute(sa.select(users.c.id, users.c.display_name).where(users.c.id.in_(ids))).tuples().all()
                 ) if ids else {}
    for r in rows:
        actor_id = _user_id_of(r["actor"])
        r["actor_name"] = names.get(actor_id) if actor_id is not None else None
        r["assignee_name"] = names.get(r["assignee_user_id"])
    return rows


def task_detail(conn: sa.Connection, now: datetime, user: AuthUser, task_id: int) -> JsonObj:
    """The task, its trail, its case (kind, state, resolution), the actions
    this user may take now, and who it may be dispatched to."""
    raw = _load(conn, task_id)
    actor = actor_facts(conn, user)
    if not may_see(raw, actor):
        raise NotPermitted("not a task of your grids")
    doc = task_json(conn, now, task_id)
    doc["events"] = trail(conn, task_id)
    doc["case"] = None
    if raw["case_id"] is not None:
        case = conn.execute(sa.select(cases.c.id, cases.c.kind, cases.c.state, cases.c.resolution, cases.c.opened_at,
                                      cases.c.closed_at).where(cases.c.id == raw["case_id"])).mappings().first()
        doc["case"] = dict(case) if case is not None else None
    doc["allowed_actions"] = workflow.allowed_actions(facts(conn, raw), actor)
    doc["assignable"] = assignable(conn, raw["grid_id"]) if {"dispatch", "reassign"} & set(
        doc["allowed_actions"]) else []
    return doc


def assignable(conn: sa.Connection, grid_id: int | None) -> list[JsonObj]:
    """Coordinators of the grid who are not disabled (administrators may be
    assigned too, by id; pages offer the grid's coordinators)."""
    if grid_id is None:
        return []
    u = users.c
    rows = conn.execute(sa.select(u.id, u.username, u.display_name)
                        .select_from(users.join(grid_coordinators, grid_coordinators.c.user_id == u.id))
                        .where(grid_coordinators.c.grid_id == grid_id, u.disabled_at.is_(None))
                        .order_by(u.display_name, u.id)).mappings()
    return [dict(r) for r in rows]


@dataclass(frozen=True)
class TaskQuery:
    grid_id: int | None = None
    assignee_user_id: int | None = None
    state: str | None = None
    overdue: bool = False
    unit_id: int | None = None
    escalated: bool = False
    sort: str = "new"
    limit: int = 100
    cursor: str | None = None


def _cursor(sort: str, raw: str) -> tuple[datetime | None, int]:
    try:
        if sort == "new":
            when, ident = None, int(raw)
        else:
            text, _, number = raw.partition("|")
            when, ident = datetime.fromisoformat(text), int(number)
    except ValueError:
        raise GridInputError("cursor", "not a cursor this list gave out") from None
    if not 0 < ident <= MAX_ID or (when is not None and when.tzinfo is None):
        raise GridInputError("cursor", "not a cursor this list gave out")
    return when, ident


def _filtered(query: sa.Select[Any], now: datetime, actor: workflow.Actor, q: TaskQuery) -> sa.Select[Any] | None:
    """The query with the actor's scope and the filters of ``q``; None if the
    actor may see no task at all."""
    if q.state is not None and q.state not in STATE_FILTERS:
        raise GridInputError("state", f"must be one of {', '.join(STATE_FILTERS)}")
    t = tasks.c
    if actor.role == "coordinator":
        query = query.where(sa.or_(t.grid_id.in_(sorted(actor.grid_ids)), t.assignee_user_id == actor.user_id))
    elif actor.role != "admin":
        return None
    if q.grid_id is not None:
        query = query.where(t.grid_id == q.grid_id)
    if q.assignee_user_id is not None:
        query = query.where(t.assignee_user_id == q.assignee_user_id)
    if q.unit_id is not None:
        query = query.where(t.unit_id == q.unit_id)
    if q.state == "open":
        query = query.where(t.state != "archived")
    elif q.state is not None:
        query = query.where(t.state == q.state)
    if q.overdue:
        query = query.where(t.state != "archived", t.due_at < now)
    if q.escalated:
        query = query.where(t.escalated_at.is_not(None))
    return query


def count_tasks(conn: sa.Connection, now: datetime, actor: workflow.Actor, q: TaskQuery) -> int:
    """How many tasks ``list_tasks`` would page through (sort and paging aside)."""
    query = _filtered(sa.select(sa.func.count()).select_from(tasks), now, actor, q)
    return int(conn.execute(query).scalar_one()) if query is not None else 0


def list_tasks(conn: sa.Connection, now: datetime, actor: workflow.Actor, q: TaskQuery) -> tuple[list[JsonObj],
                                                                                                  str | None]:
    """One page of tasks the actor may see, and the cursor of the next page
    (None at the end). sort "new": newest first; "due": earliest deadline
    first (open tasks only: archived ones have no deadline)."""
    if q.sort not in SORTS:
        raise GridInputError("sort", f"must be one of {', '.join(SORTS)}")
    if not 1 <= q.limit <= MAX_LIMIT:
        raise GridInputError("limit", f"must be 1..{MAX_LIMIT}")
    t = tasks.c
    query = _filtered(sa.select(*_columns()).select_from(_from()), now, actor, q)
    if query is None:
        return [], None
    if q.sort == "new":
        query = query.order_by(t.id.desc())
        if q.cursor:
            query = query.where(t.id < _cursor("new", q.cursor)[1])
    else:
        query = query.where(t.due_at.is_not(None)).order_by(t.due_at, t.id)
        if q.cursor:
            when, ident = _cursor("due", q.cursor)
            query = query.where(sa.or_(t.due_at > when, sa.and_(t.due_at == when, t.id > ident)))
    rows = conn.execute(query.limit(q.limit + 1)).mappings().all()
    items = [_doc(r, now) for r in rows[:q.limit]]
    more = len(rows) > q.limit
    if not more or not items:
        return items, None
    last = items[-1]
    cursor = str(last["id"]) if q.sort == "new" else f"{last['due_at'].isoformat()}|{last['id']}"
    return items, cursor


def counts_by_state(conn: sa.Connection, now: datetime, user_id: int) -> dict[str, int]:
    """A coordinator's own open tasks per state, plus "overdue"."""
    t = tasks.c
    rows = conn.execute(sa.select(t.state, sa.func.count(), sa.func.sum(sa.case((t.due_at < now, 1), else_=0)))
                        .where(t.assignee_user_id == user_id, t.state != "archived").group_by(t.state)).all()
    out = {state: int(n) for state, n, _ in rows}
    out["overdue"] = sum(int(late or 0) for _, _, late in rows)
    return out
