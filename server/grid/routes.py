"""``/api/v1`` routes of grid work (docs/grid.md, "API"): tasks and their
workflow actions, coordinators of a grid, overdue patrols, workload.

Errors have the API's usual shape; this module adds 403 for NotPermitted
(the person may not take that action on that task)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from server.appkeys import ENGINE
from server.auth.policy import actor_of, allow, require_user
from server.grid import api_doc as doc
from server.grid import grids, schedule, service
from server.grid.errors import NotPermitted
from server.grid.scope import grid_ids_of
from server.grid.workload import workload
from server.registry.appkeys import RULES
from server.rules import CityRules
from server.web.errors import InvalidInput
from server.web.http import answer, api_errors, int_param, read_body
from server.web.ids import DbId
from server.web.openapi import Reply, api
from server.web.transactions import write_transaction

T = TypeVar("T")
JsonObj = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STAFF = ("admin", "coordinator")
Text = Annotated[str, StringConstraints(max_length=4000)]
Username = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Word = Annotated[str, StringConstraints(max_length=32)]


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    assignee_user_id: DbId | None = None
    assignee_username: Username | None = None
    note: Text | None = None
    # Checked against workflow.EVALUATIONS and DISMISS_REASONS; bounded before that.
    evaluation: Word | None = None
    reason: Word | None = None


class CoordinatorIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: DbId | None = None
    username: Username | None = None


def grid_api(handler: Handler) -> Handler:
    """api_errors plus 403 for what the workflow does not let this person do."""
    inner = api_errors(handler)

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await inner(request)
        except NotPermitted as exc:
            return answer({"error": "forbidden", "detail": str(exc)}, 403)
    return wrapped


def _now() -> datetime:
    return datetime.now(UTC)


def _rules(request: web.Request) -> CityRules:
    return request.app[RULES]


async def _read(request: web.Request, fn: Callable[[sa.Connection], T]) -> T:
    def run() -> T:
        with request.app[ENGINE].connect() as conn:
            return fn(conn)
    return await asyncio.to_thread(run)


async def _write(request: web.Request, fn: Callable[[sa.Connection, datetime], T]) -> T:
    def run() -> T:
        with write_transaction(request.app[ENGINE]) as conn:
            return fn(conn, _now())
    return await asyncio.to_thread(run)


def bool_param(query: Any, name: str) -> bool:
    raw = (query.get(name) or "").lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise InvalidInput(name, "must be 1 or 0")


TASK_PARAMS = {"grid_id", "assignee_user_id", "state", "overdue", "unit_id", "escalated", "sort", "limit", "cursor",
               "mine"}


def task_query(query: Any, user_id: int) -> service.TaskQuery:
    unknown = sorted(set(query) - TASK_PARAMS)
    if unknown:
        raise InvalidInput(unknown[0], f"unknown parameter; known ones are {', '.join(sorted(TASK_PARAMS))}")
    assignee = user_id if bool_param(query, "mine") else int_param(query, "assignee_user_id")
    return service.TaskQuery(grid_id=int_param(query, "grid_id"), assignee_user_id=assignee,
                             state=query.get("state") or None, overdue=bool_param(query, "overdue"),
                             unit_id=int_param(query, "unit_id"), escalated=bool_param(query, "escalated"),
                             sort=query.get("sort") or "new",
                             limit=int_param(query, "limit", default=100, hi=service.MAX_LIMIT) or 100,
                             cursor=query.get("cursor") or None)


# --------------------------------------------------------------------------- tasks


@grid_api
async def list_tasks(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    q = task_query(request.query, user.id)

    def read(conn: sa.Connection) -> JsonObj:
        items, cursor = service.list_tasks(conn, _now(), service.actor_facts(conn, user), q)
        return {"tasks": items, "next": cursor}
    return answer(await _read(request, read))


@grid_api
async def get_task(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    task_id = int(request.match_info["id"])
    return answer(await _read(request, lambda conn: service.task_detail(conn, _now(), user, task_id)))


def _assignee(conn: sa.Connection, body: ActionIn) -> int | None:
    if body.assignee_username is not None:
        if body.assignee_user_id is not None:
            raise InvalidInput("assignee_username", "send assignee_user_id or assignee_username, not both")
        try:
            return grids.user_by_name(conn, body.assignee_username)
        except LookupError:
            raise InvalidInput("assignee_username", "no such user") from None
    return body.assignee_user_id


@grid_api
async def task_action(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    task_id = int(request.match_info["id"])
    action = request.match_info["action"]
    body = await read_body(request, ActionIn, optional=True)
    rules = _rules(request)

    def write(conn: sa.Connection, now: datetime) -> JsonObj:
        given = service.ActionInput(_assignee(conn, body), body.note, body.evaluation, body.reason)
        service.apply_action(conn, now, rules, user, task_id, action, given)
        return service.task_detail(conn, now, user, task_id)
    return answer(await _write(request, write))


# --------------------------------------------------------------------------- grids


def _grid_id(request: web.Request) -> int:
    return int(request.match_info["id"])


def _resolve_user(conn: sa.Connection, user_id: int | None, username: str | None) -> int:
    if (user_id is None) == (username is None):
        raise InvalidInput("user_id", "send user_id or username")
    if username is not None:
        try:
            return grids.user_by_name(conn, username)
        except LookupError:
            raise InvalidInput("username", "no such user") from None
    assert user_id is not None
    return user_id


@grid_api
async def list_coordinators(request: web.Request) -> web.Response:
    require_user(request, "admin")
    grid_id = _grid_id(request)
    return answer({"coordinators": await _read(request, lambda conn: grids.coordinators_of(conn, grid_id))})


@grid_api
async def add_coordinator(request: web.Request) -> web.Response:
    user = require_user(request, "admin")
    grid_id = _grid_id(request)
    body = await read_body(request, CoordinatorIn)

    def write(conn: sa.Connection, now: datetime) -> tuple[bool, list[JsonObj]]:
        target = _resolve_user(conn, body.user_id, body.username)
        return grids.assign(conn, now, actor_of(user), grid_id, target), grids.coordinators_of(conn, grid_id)

    created, rows = await _write(request, write)
    return answer({"coordinators": rows}, 201 if created else 200)


@grid_api
async def remove_coordinator(request: web.Request) -> web.Response:
    """The user named by ?user_id= or ?username= (or the same in a JSON body)."""
    user = require_user(request, "admin")
    grid_id = _grid_id(request)
    body = await read_body(request, CoordinatorIn, optional=True)
    user_id = body.user_id if body.user_id is not None else int_param(request.query, "user_id")
    username = body.username if body.username is not None else request.query.get("username")

    def write(conn: sa.Connection, now: datetime) -> list[JsonObj]:
        grids.unassign(conn, now, actor_of(user), grid_id, _resolve_user(conn, user_id, username))
        return grids.coordinators_of(conn, grid_id)
    return answer({"coordinators": await _write(request, write)})


# --------------------------------------------------------------------------- patrols and workload


def _visible_grids(conn: sa.Connection, role: str, user_id: int) -> frozenset[int] | None:
    """None: every grid (an administrator); else the coordinator's grids."""
    return None if role == "admin" else grid_ids_of(conn, user_id)


@grid_api
async def overdue_patrols(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    grid_id = int_param(request.query, "grid_id")
    limit = int_param(request.query, "limit", default=200, hi=schedule.MAX_LIMIT) or 200
    offset = int_param(request.query, "offset", default=0, lo=0) or 0
    rules = _rules(request)

    def read(conn: sa.Connection) -> JsonObj:
        now = _now()
        mine = _visible_grids(conn, user.role, user.id)
        if grid_id is not None and mine is not None and grid_id not in mine:
            raise NotPermitted("not one of your grids")
        units, total = schedule.overdue_units(conn, now, rules, grid_ids=mine, grid_id=grid_id, limit=limit,
                                              offset=offset)
        more = offset + len(units) < total
        return {"units": units, "total": total, "next_offset": offset + len(units) if more else None}
    return answer(await _read(request, read))


@grid_api
async def get_workload(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    rules = _rules(request)

    def read(conn: sa.Connection) -> JsonObj:
        return workload(conn, _now(), rules, grid_ids=_visible_grids(conn, user.role, user.id))
    return answer(await _read(request, read))


def add_routes(app: web.Application) -> None:
    r = app.router
    task, grid = {"id": "task"}, {"id": "grid"}
    # What each route takes and answers, for the OpenAPI document (server/web/openapi.py).
    r.add_get("/api/v1/tasks", allow(*STAFF, query={"grid_id": "grid", "unit_id": "unit"},
                                     rule="lists only tasks of the caller's grids and their own")(
        api("List tasks", tag="grid", query=doc.TASK_QUERY, responses={200: doc.TaskPage})(list_tasks)))
    r.add_get(r"/api/v1/tasks/{id:\d+}", allow(*STAFF, path=task)(
        api("A task with its trail and the caller's next steps", tag="grid",
            responses={200: doc.TaskDetail})(get_task)))
    r.add_post(r"/api/v1/tasks/{id:\d+}/{action}", allow(*STAFF, path=task)(
        api("Take a step of a task's workflow", tag="grid", path=(doc.ACTION,), body=ActionIn, body_required=False,
            responses={200: doc.TaskDetail}, errors=(409,))(task_action)))
    r.add_get(r"/api/v1/grids/{id:\d+}/coordinators", allow("admin", path=grid)(
        api("A grid's coordinators", tag="grid", responses={200: doc.CoordinatorList})(list_coordinators)))
    r.add_post(r"/api/v1/grids/{id:\d+}/coordinators", allow("admin", path=grid)(
        api("Assign a coordinator to a grid", tag="grid", body=CoordinatorIn, responses={
            201: Reply(doc.CoordinatorList, "assigned"), 200: Reply(doc.CoordinatorList, "already assigned")})(
            add_coordinator)))
    r.add_delete(r"/api/v1/grids/{id:\d+}/coordinators", allow("admin", path=grid)(
        api("Unassign a coordinator (named in the query or the body)", tag="grid", body=CoordinatorIn,
            body_required=False, query=doc.UNASSIGN_QUERY, responses={200: doc.CoordinatorList})(
            remove_coordinator)))
    r.add_get("/api/v1/patrols/overdue", allow(*STAFF, query={"grid_id": "grid"},
                                                   rule="units of the caller's grids")(
        api("Units whose patrol is overdue, most overdue first", tag="grid", query=doc.OVERDUE_QUERY,
            responses={200: doc.OverduePage})(overdue_patrols)))
    r.add_get("/api/v1/workload", allow(*STAFF, rule="the caller's grids")(
        api("Residents per coordinator, per grid and per coordinator", tag="grid",
            responses={200: doc.Workload})(get_workload)))
