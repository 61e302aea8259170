"""``/api/v1`` routes of reconciliation: cases and their lifecycle, the four
rates and their history, and the engine's status.

Who may do what: admin and coordinator see and act on every case; a landlord
sees only the cases of their own buildings and may acknowledge and answer
those (resolving is staff work). Rates are for admin, coordinator and police.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from server.access.registry import Outcome
from server.access.routes import ACCESS
from server.appkeys import ENGINE
from server.auth.policy import AuthUser, actor_of, allow, require_user
from server.db.models import buildings, cases, grid_coordinators
from server.reconcile import api_doc as doc
from server.reconcile import cases as case_ops
from server.reconcile import rates
from server.reconcile.appkeys import RECONCILER, SERVICE
from server.registry.appkeys import RULES
from server.rules import CityRules
from server.web.errors import InvalidInput, NotFound
from server.web.http import answer, api_errors, int_param, read_body
from server.web.openapi import api
from server.web.times import DATE_OR_TIME, STORABLE_YEAR
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STAFF = ("admin", "coordinator")
CASE_READERS = ("admin", "coordinator", "landlord")
RATE_READERS = ("admin", "coordinator", "police")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResolveIn(_Body):
    # case_ops.resolve_case checks it against the one list; the document shows that list.
    resolution: str = Field(max_length=32, json_schema_extra={"enum": list(case_ops.MANUAL_RESOLUTIONS)})
    note: Annotated[str, StringConstraints(max_length=4000)] | None = None


class AnswerIn(_Body):
    still_living: bool
    # An ISO 8601 time with a zone; parsed by _departed_at.
    departed_at: Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=40),
                           STORABLE_YEAR, DATE_OR_TIME] | None = None


def _engine(request: web.Request) -> sa.Engine:
    return request.app[ENGINE]


def _rules(request: web.Request) -> CityRules:
    return request.app.get(RULES) or CityRules()


async def _read(request: web.Request, fn: Callable[[sa.Connection], T]) -> T:
    def run() -> T:
        with _engine(request).connect() as conn:
            return fn(conn)
    return await asyncio.to_thread(run)


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    return int_param(request.query, name, default=default)


def _case_id(request: web.Request) -> int:
    return int(request.match_info["id"])


def _own_buildings(conn: sa.Connection, user: AuthUser) -> list[int] | None:
    """None: every building (an administrator); else the buildings in the
    caller's scope: a landlord's own, a coordinator's grids' (docs/auth.md)."""
    if user.role == "admin":
        return None
    if user.role == "coordinator":
        return list(conn.execute(sa.select(buildings.c.id).join(
            grid_coordinators, grid_coordinators.c.grid_id == buildings.c.grid_id)
            .where(grid_coordinators.c.user_id == user.id)).scalars())
    return list(conn.execute(sa.select(buildings.c.id).where(buildings.c.landlord_user_id == user.id)).scalars())


def _check_case(conn: sa.Connection, user: AuthUser, case_id: int) -> None:
    """404 for a case that does not exist or is outside the caller's scope
    (the route policy has already refused the latter; this is the second lock)."""
    building_id = conn.execute(sa.select(cases.c.building_id).where(cases.c.id == case_id)).first()
    if building_id is None:
        raise NotFound("case", case_id)
    own = _own_buildings(conn, user)
    if own is not None and building_id[0] not in own:
        raise NotFound("case", case_id)


# --------------------------------------------------------------------------- cases


@api_errors
async def list_cases(request: web.Request) -> web.Response:
    user = require_user(request, *CASE_READERS)
    q = request.query
    limit = int_param(request.query, "limit", default=100, hi=1000) or 100

    def run(conn: sa.Connection) -> list[dict[str, Any]]:
        return case_ops.list_cases(conn, state=q.get("state") or None, kind=q.get("kind") or None,
                                   building_id=_int(request, "building_id"), unit_id=_int(request, "unit_id"),
                                   limit=limit, before_id=_int(request, "before_id"),
                                   building_ids=_own_buildings(conn, user))
    items = await _read(request, run)
    next_before = items[-1]["id"] if len(items) == limit else None
    return answer({"items": items, "next_before_id": next_before})


@api_errors
async def get_case(request: web.Request) -> web.Response:
    user = require_user(request, *CASE_READERS)
    case_id = _case_id(request)

    def run(conn: sa.Connection) -> dict[str, Any]:
        _check_case(conn, user, case_id)
        return case_ops.get_case(conn, case_id)
    return answer(await _read(request, run))


async def _write(request: web.Request, user: AuthUser, case_id: int,
                 fn: Callable[[sa.Connection, datetime], dict[str, Any]]) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        with write_transaction(_engine(request)) as conn:
            _check_case(conn, user, case_id)
            return fn(conn, datetime.now(UTC))
    return await asyncio.to_thread(run)


@api_errors
async def acknowledge(request: web.Request) -> web.Response:
    user = require_user(request, *CASE_READERS)
    case_id = _case_id(request)
    return answer(await _write(request, user, case_id,
                                lambda conn, now: case_ops.acknowledge_case(conn, now, actor_of(user), case_id)))


@api_errors
async def resolve(request: web.Request) -> web.Response:
    user = require_user(request, *STAFF)
    case_id = _case_id(request)
    body = await read_body(request, ResolveIn)
    return answer(await _write(request, user, case_id, lambda conn, now: case_ops.resolve_case(
        conn, now, actor_of(user), case_id, resolution=body.resolution, note=body.note)))


def _departed_at(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("departed_at", "must be an ISO 8601 time") from None
    if value.tzinfo is None:
        raise InvalidInput("departed_at", "must carry a time zone")
    return value


@api_errors
async def answer_departure(request: web.Request) -> web.Response:
    user = require_user(request, *CASE_READERS)
    case_id = _case_id(request)
    body = await read_body(request, AnswerIn)
    still_living = body.still_living
    departed_at = _departed_at(body.departed_at)

    def operation(conn: sa.Connection, now: datetime) -> Outcome:
        _check_case(conn, user, case_id)
        return case_ops.answer_departure(conn, now, actor_of(user), case_id, still_living=still_living,
                                         departed_at=departed_at)
    access = request.app.get(ACCESS)
    if access is not None:
        # One transaction, then the revoked cards leave the gateways' lists.
        return answer((await access.apply(operation)).body)

    def run() -> Outcome:
        with write_transaction(_engine(request)) as conn:
            return operation(conn, datetime.now(UTC))
    return answer((await asyncio.to_thread(run)).body)


# --------------------------------------------------------------------------- rates and status


@api_errors
async def get_rates(request: web.Request) -> web.Response:
    require_user(request, *RATE_READERS)
    rules = _rules(request)
    computed = await _read(request, lambda conn: rates.compute_rates(conn, rules, datetime.now(UTC)))
    chosen = rates.select_rates(computed, level=request.query.get("level") or None,
                                code=request.query.get("code") or None)
    return answer({"items": [r.as_json() for r in chosen]})


@api_errors
async def get_rate_history(request: web.Request) -> web.Response:
    require_user(request, *RATE_READERS)
    code = request.query.get("code")
    if not code:
        raise InvalidInput("code", "is required (an area code)")
    days = _int(request, "days", 30) or 30
    today = datetime.now(UTC).astimezone(_rules(request).zone).date()
    return answer({"code": code, "items": await _read(request, lambda c: rates.rate_history(c, code, days,
                                                                                              today=today))})


@api_errors
async def status(request: web.Request) -> web.Response:
    require_user(request, *STAFF)
    reconciler = request.app.get(RECONCILER)
    if reconciler is None:
        return answer({"running": False})
    service = request.app.get(SERVICE)
    lag = await asyncio.to_thread(reconciler.watermark_lag)
    open_cases = await asyncio.to_thread(reconciler.open_cases)
    t = reconciler.totals
    return answer({"running": service is not None, "events_reconciled": t.events, "unknown_reads": t.unknown,
                    "reads_without_building": t.no_building, "watermark": t.watermark, "watermark_lag": lag,
                    "last_sweep_s": t.last_sweep_s, "last_sweep_at": t.last_sweep_at,
                    "failures": service.failures if service is not None else 0, "open_cases": open_cases})


def add_routes(app: web.Application) -> None:
    r = app.router
    case = {"id": "case"}
    # What each route takes and answers, for the OpenAPI document (server/web/openapi.py).
    r.add_get("/api/v1/cases", allow(*CASE_READERS, query={"building_id": "building", "unit_id": "unit"},
                                     rule="lists only cases in the caller's scope")(
        api("List cases, newest first", tag="cases", query=doc.CASE_QUERY, responses={200: doc.CasePage})(
            list_cases)))
    r.add_get(r"/api/v1/cases/{id:\d+}", allow(*CASE_READERS, path=case)(
        api("A case with its history", tag="cases", responses={200: doc.CaseDetail})(get_case)))
    r.add_post(r"/api/v1/cases/{id:\d+}/acknowledge", allow(*CASE_READERS, path=case)(
        api("Acknowledge an open case", tag="cases", responses={200: doc.Case}, errors=(409,))(acknowledge)))
    r.add_post(r"/api/v1/cases/{id:\d+}/resolve", allow(*STAFF, path=case)(
        api("Close a case by hand", tag="cases", body=ResolveIn, responses={200: doc.Case}, errors=(409,))(
            resolve)))
    r.add_post(r"/api/v1/cases/{id:\d+}/answer", allow(*CASE_READERS, path=case)(
        api("Answer a presumed departure: still living here, or gone", tag="cases", body=AnswerIn,
            responses={200: doc.Case}, errors=(409,))(answer_departure)))
    r.add_get("/api/v1/rates", allow(*RATE_READERS, rule="aggregate figures only")(
        api("The four rates per area", tag="rates", query=doc.RATE_QUERY, responses={200: doc.RateList},
            errors=(404,))(get_rates)))
    r.add_get("/api/v1/rates/history", allow(*RATE_READERS, rule="aggregate figures only")(
        api("One area's rates per day", tag="rates", query=doc.RATE_HISTORY_QUERY,
            responses={200: doc.RateHistory}, errors=(404,))(get_rate_history)))
    r.add_get("/api/v1/reconcile/status", allow(*STAFF)(
        api("The reconciliation engine's state", tag="rates", responses={200: doc.EngineStatus})(status)))
