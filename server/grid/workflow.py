"""The task workflow as an explicit state machine, pure (no database):

    上报 reported → 派遣 dispatched → 处置 handled → 核查 verified → 评价 evaluated → 归档 archived

``TRANSITIONS`` is the whole table: each action, the states it may start
from, the state it leads to, who may take it and what it needs. ``plan``
checks one action against the table and returns the ``Step`` the service
writes; anything the table does not allow raises (IllegalTransition for the
state, NotPermitted for the person, GridInputError for the input). docs/grid.md
shows the same table in words.

Decisions (documented in docs/grid.md):
- Dispatching is the dispatcher's (an administrator's) job; a coordinator of
  the task's grid may *claim* a reported task, i.e. dispatch it to themself.
- Only the assignee records the handling: the trail must say who did the work.
- Four-eyes: whoever handled a task (the last "handle") may neither verify,
  reject nor evaluate it, administrators included — a one-person office
  cannot check its own work, which is the point of the rule.
- Reassigning keeps the step's deadline (a hand-over does not buy time);
  rework (reject) starts a fresh 派遣 deadline.
- Archived is terminal: no action leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.db.models import TASK_STATES
from server.grid.errors import GridInputError, IllegalTransition, NotPermitted
from server.grid.tasks import clean_note

EVALUATIONS = ("good", "adequate", "poor")
DISMISS_REASONS = ("no_action_needed", "duplicate")
# The six steps in order, for pages that draw them.
STEPS = TASK_STATES


@dataclass(frozen=True)
class Transition:
    action: str
    sources: tuple[str, ...]
    target: str
    who: str
    needs: str


# The table. ``who`` and ``needs`` are the words docs/grid.md repeats; the
# checks themselves are in _may and _inputs below, keyed by action.
TRANSITIONS: dict[str, Transition] = {t.action: t for t in (
    Transition("dispatch", ("reported",), "dispatched", "admin",
               "assignee: a coordinator of the task's grid, or an admin"),
    Transition("claim", ("reported",), "dispatched", "a coordinator of the task's grid, or an admin",
               "nothing (the assignee is the actor)"),
    Transition("reassign", ("dispatched",), "dispatched", "admin, or the current assignee",
               "a different assignee, eligible as for dispatch"),
    Transition("handle", ("dispatched",), "handled", "the assignee", "note: what was done"),
    Transition("verify", ("handled",), "verified", "admin or a coordinator of the grid, not who handled it",
               "optional note"),
    Transition("reject", ("handled",), "dispatched", "admin or a coordinator of the grid, not who handled it",
               "note: the reason (rework)"),
    Transition("evaluate", ("verified",), "evaluated", "admin, not who handled it",
               "evaluation good / adequate / poor and a note"),
    Transition("archive", ("evaluated",), "archived", "admin", "optional note"),
    Transition("dismiss", ("reported",), "archived", "admin",
               "reason no_action_needed / duplicate, optional note"),
)}
ACTIONS = tuple(TRANSITIONS)


@dataclass(frozen=True)
class Actor:
    """Who acts: their user id, role and the grids they are assigned to."""

    user_id: int
    role: str
    grid_ids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Candidate:
    """A proposed assignee, as the service found them in the database."""

    user_id: int
    role: str
    grid_ids: frozenset[int] = frozenset()
    disabled: bool = False


@dataclass(frozen=True)
class TaskFacts:
    state: str
    grid_id: int | None
    assignee_user_id: int | None
    # The user who recorded the last "handle" (four-eyes).
    handled_by: int | None = None


@dataclass(frozen=True)
class Request:
    assignee: Candidate | None = None
    note: str | None = None
    evaluation: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Step:
    """What the service writes: the new state and assignee, the audit note
    and, for evaluate, the evaluation."""

    action: str
    from_state: str
    to_state: str
    assignee_user_id: int | None
    note: str | None
    evaluation: str | None = None
    evaluation_note: str | None = None
    # The step's deadline starts again (a new state, or rework).
    new_deadline: bool = True


def _in_grid(actor: Actor, task: TaskFacts) -> bool:
    return task.grid_id is not None and task.grid_id in actor.grid_ids


def _admin(actor: Actor) -> bool:
    return actor.role == "admin"


def _checker(actor: Actor, task: TaskFacts) -> bool:
    return _admin(actor) or (actor.role == "coordinator" and _in_grid(actor, task))


def _not_handler(actor: Actor, task: TaskFacts) -> bool:
    return task.handled_by is None or task.handled_by != actor.user_id


def _may(action: str, task: TaskFacts, actor: Actor) -> str | None:
    """None if ``actor`` may take ``action`` on ``task`` (state aside), else why not."""
    if action in ("dispatch", "archive", "dismiss"):
        return None if _admin(actor) else "only an administrator may do this"
    if action == "claim":
        return None if _admin(actor) or (actor.role == "coordinator" and _in_grid(actor, task)) else \
            "only a coordinator of the task's grid may claim it"
    if action == "reassign":
        return None if _admin(actor) or task.assignee_user_id == actor.user_id else \
            "only an administrator or the assignee may hand the task over"
    if action == "handle":
        return None if task.assignee_user_id == actor.user_id else "only the assignee records the handling"
    if action in ("verify", "reject"):
        if not _checker(actor, task):
            return "only an administrator or a coordinator of the task's grid may check it"
        return None if _not_handler(actor, task) else "whoever handled a task may not check it (four-eyes)"
    if action == "evaluate":
        if not _admin(actor):
            return "only an administrator may evaluate"
        return None if _not_handler(actor, task) else "whoever handled a task may not evaluate it (four-eyes)"
    raise AssertionError(action)  # pragma: no cover - every action of the table is above


def eligible(candidate: Candidate, task: TaskFacts) -> str | None:
    """None if ``candidate`` may be assigned the task, else why not."""
    if candidate.disabled:
        return "that user is disabled"
    if candidate.role == "admin":
        return None
    if candidate.role != "coordinator":
        return "must be a coordinator or an administrator"
    if task.grid_id is None:
        return "the task has no grid, so only an administrator can take it"
    if task.grid_id not in candidate.grid_ids:
        return "is not a coordinator of the task's grid"
    return None


def _assignee(action: str, task: TaskFacts, actor: Actor, request: Request) -> int | None:
    if action == "claim":
        return actor.user_id
    if action in ("dispatch", "reassign"):
        if request.assignee is None:
            raise GridInputError("assignee", "is required")
        problem = eligible(request.assignee, task)
        if problem is not None:
            raise GridInputError("assignee", problem)
        if action == "reassign" and request.assignee.user_id == task.assignee_user_id:
            raise GridInputError("assignee", "already has the task")
        return request.assignee.user_id
    return task.assignee_user_id


def plan(action: str, task: TaskFacts, actor: Actor, request: Request) -> Step:
    """The step ``action`` makes, or the reason it may not be taken."""
    transition = TRANSITIONS.get(action)
    if transition is None:
        raise IllegalTransition(action, task.state, f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    if task.state not in transition.sources:
        raise IllegalTransition(action, task.state)
    why_not = _may(action, task, actor)
    if why_not is not None:
        raise NotPermitted(why_not)
    assignee = _assignee(action, task, actor, request)
    required = action in ("handle", "reject", "evaluate")
    note = clean_note(request.note, required=required)
    if action == "evaluate":
        if request.evaluation not in EVALUATIONS:
            raise GridInputError("evaluation", f"must be one of {', '.join(EVALUATIONS)}")
        return Step(action, task.state, transition.target, assignee, note, request.evaluation, note)
    if action == "dismiss":
        if request.reason not in DISMISS_REASONS:
            raise GridInputError("reason", f"must be one of {', '.join(DISMISS_REASONS)}")
        note = f"{request.reason}: {note}" if note else request.reason
    return Step(action, task.state, transition.target, assignee, note, new_deadline=action != "reassign")


def allowed_actions(task: TaskFacts, actor: Actor) -> list[str]:
    """The actions ``actor`` may take now (inputs aside), in table order:
    what a page offers as buttons."""
    out = []
    for action, transition in TRANSITIONS.items():
        if task.state in transition.sources and _may(action, task, actor) is None:
            out.append(action)
    return out
