"""What the grid-work routes answer and the query parameters they read,
for the OpenAPI document (server/web/openapi.py). The models describe the
dicts server/grid/service.py, grids.py, schedule.py and workload.py build;
they never build them."""

from __future__ import annotations

from datetime import datetime

from server.db.models import TASK_STATES
from server.grid import schedule, service
from server.grid.workflow import ACTIONS
from server.web.openapi import Out, Param, enum_query, flag_query, int_query, text_query


class Task(Out):
    id: int
    kind: str
    state: str
    case_id: int | None
    grid_id: int | None
    building_id: int | None
    unit_id: int | None
    summary: str | None
    created_at: datetime
    due_at: datetime | None
    closed_at: datetime | None
    source: str
    assignee_user_id: int | None
    overdue: bool


class TaskEvent(Out):
    id: int
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str | None


class Assignable(Out):
    id: int
    username: str
    display_name: str | None


class TaskDetail(Task):
    events: list[TaskEvent]
    case: dict[str, object] | None
    allowed_actions: list[str]
    assignable: list[Assignable]


class TaskPage(Out):
    tasks: list[Task]
    next: str | None


class Coordinator(Out):
    id: int
    username: str
    display_name: str | None
    assigned_at: datetime
    assigned_by: str | None


class CoordinatorList(Out):
    coordinators: list[Coordinator]


class OverdueUnit(Out):
    unit_id: int


class OverduePage(Out):
    units: list[OverdueUnit]
    total: int
    next_offset: int | None


class Workload(Out):
    ratio: int
    grids: list[dict[str, object]]
    coordinators: list[dict[str, object]]


ACTION = Param("action", {"type": "string", "enum": list(ACTIONS)}, "the workflow step (docs/grid.md)")
TASK_QUERY = (
    int_query("assignee_user_id", "tasks assigned to this user"),
    flag_query("mine", "tasks assigned to the caller"),
    enum_query("state", "tasks in this state (open: any not yet archived)", (*TASK_STATES, "open")),
    flag_query("overdue", "only overdue tasks"),
    flag_query("escalated", "only escalated tasks"),
    enum_query("sort", "new: newest first; due: earliest deadline first", service.SORTS),
    int_query("limit", "how many at most (default 100)", hi=service.MAX_LIMIT),
    text_query("cursor", "the `next` of the previous page", max_length=200),
)
OVERDUE_QUERY = (int_query("limit", "how many at most (default 200)", hi=schedule.MAX_LIMIT),
                 int_query("offset", "how many to skip", lo=0))
UNASSIGN_QUERY = (int_query("user_id", "the coordinator's user id (or in the body)"),
                  text_query("username", "the coordinator's user name (or in the body)", max_length=64))
