"""Which unit a gateway's door serves: what a unit door camera's counts are
evidence about (server/reconcile/camera.py, docs/reconcile.md "Camera
evidence"). An administrator, or the landlord of the building the gateway
is in, sets, lists and removes a gateway's doors; every change is in the
history (entity "door"). A mapping belongs to the building the gateway was
in when it was made: after the gateway moves, it neither counts nor shows.

The route policy checks that the gateway (and a named unit) is in the
caller's scope before the handler runs; the handler checks that the unit is
in the gateway's building."""

from __future__ import annotations

import asyncio
import unicodedata
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from server.appkeys import ENGINE
from server.auth.policy import actor_of, allow, require_user
from server.db.models import doors, gateways, units
from server.registry import history
from server.web.errors import Conflict, InvalidInput, NotFound
from server.web.http import answer, api_errors, read_body
from server.web.ids import DbId
from server.web.openapi import Out, api
from server.web.transactions import write_transaction

MANAGERS = ("admin", "landlord")
MAX_DOOR = 64  # wire.DeviceId
JsonObj = dict[str, Any]


class DoorIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # None (or left out): the building's entrance, no unit.
    unit_id: DbId | None = None
    # A camera there counts people for the unit.
    camera: bool = True


class Door(Out):
    gateway: str
    door: str
    unit_id: int | None
    unit_number: str | None
    camera: bool
    updated_at: datetime


class DoorList(Out):
    gateway: str
    building_id: int
    doors: list[Door]


class DoorRemoved(Out):
    gateway: str
    door: str
    removed: bool


def door_name(raw: str) -> str:
    """A door as the gateway names it in its events (1-64 characters, no
    control characters)."""
    if not 1 <= len(raw) <= MAX_DOOR or any(unicodedata.category(ch).startswith("C") for ch in raw):
        raise InvalidInput("door", f"a door is 1 to {MAX_DOOR} characters without control characters")
    return raw


def _gateway_building(conn: sa.Connection, gateway_id: str) -> int:
    row = conn.execute(sa.select(gateways.c.building_id).where(gateways.c.id == gateway_id)).first()
    if row is None:
        raise NotFound("gateway", gateway_id)
    if row[0] is None:
        raise Conflict("the gateway is in no building: put it in one first (PUT /api/v1/gateways/{gw}/building)")
    return int(row[0])


def _doc(conn: sa.Connection, gateway_id: str, door: str) -> JsonObj:
    d, u = doors.c, units.c
    row = conn.execute(sa.select(d.door, d.unit_id, u.number, d.camera, d.updated_at)
                       .select_from(doors.outerjoin(units, u.id == d.unit_id))
                       .where(d.gateway_id == gateway_id, d.door == door)).one()
    return {"gateway": gateway_id, "door": row[0], "unit_id": row[1], "unit_number": row[2], "camera": row[3],
            "updated_at": row[4]}


def set_door(conn: sa.Connection, now: datetime, actor: str, gateway_id: str, door: str, *,
             unit_id: int | None, camera: bool) -> JsonObj:
    building_id = _gateway_building(conn, gateway_id)
    if unit_id is not None:
        unit_building = conn.execute(sa.select(units.c.building_id).where(units.c.id == unit_id)).scalar()
        if unit_building != building_id:
            raise InvalidInput("unit_id", "no such unit in the gateway's building")
    d = doors.c
    old = conn.execute(sa.select(d.id, d.building_id, d.unit_id, d.camera)
                       .where(d.gateway_id == gateway_id, d.door == door)).first()
    fields = {"building_id": building_id, "unit_id": unit_id, "camera": camera}
    if old is None:
        door_id = conn.execute(sa.insert(doors).values(gateway_id=gateway_id, door=door, created_at=now,
                                                       updated_at=now, **fields).returning(d.id)).scalar_one()
        history.record(conn, now, actor, "door", door_id, "created",
                       {"gateway": gateway_id, "door": door, **fields})
    else:
        before = {"building_id": old[1], "unit_id": old[2], "camera": old[3]}
        changes = history.diff(before, fields)
        if changes:
            conn.execute(sa.update(doors).where(d.id == old[0]).values(updated_at=now, **fields))
            history.record(conn, now, actor, "door", old[0], "updated", changes)
    return _doc(conn, gateway_id, door)


def list_doors(conn: sa.Connection, gateway_id: str) -> JsonObj:
    building_id = _gateway_building(conn, gateway_id)
    d = doors.c
    names = conn.execute(sa.select(d.door).where(d.gateway_id == gateway_id, d.building_id == building_id)
                         .order_by(d.door)).scalars().all()
    return {"gateway": gateway_id, "building_id": building_id,
            "doors": [_doc(conn, gateway_id, name) for name in names]}


def remove_door(conn: sa.Connection, now: datetime, actor: str, gateway_id: str, door: str) -> JsonObj:
    building_id = _gateway_building(conn, gateway_id)
    d = doors.c
    found = conn.execute(sa.select(d.id, d.unit_id, d.camera).where(
        d.gateway_id == gateway_id, d.door == door, d.building_id == building_id)).first()
    if found is None:
        raise NotFound("door", door)
    conn.execute(sa.delete(doors).where(d.id == found[0]))
    history.record(conn, now, actor, "door", found[0], "removed",
                   {"gateway": gateway_id, "door": door, "unit_id": [found[1], None]})
    return {"gateway": gateway_id, "door": door, "removed": True}


# --------------------------------------------------------------------------- routes


async def _in_transaction(request: web.Request, fn: Any) -> JsonObj:
    def run() -> JsonObj:
        with write_transaction(request.app[ENGINE]) as conn:
            result: JsonObj = fn(conn, datetime.now(UTC))
            return result
    return await asyncio.to_thread(run)


@api_errors
async def put_door(request: web.Request) -> web.Response:
    user = require_user(request, *MANAGERS)
    gw, door = request.match_info["gw"], door_name(request.match_info["door"])
    b = await read_body(request, DoorIn)
    return answer(await _in_transaction(request, lambda conn, now: set_door(
        conn, now, actor_of(user), gw, door, unit_id=b.unit_id, camera=b.camera)))


@api_errors
async def get_doors(request: web.Request) -> web.Response:
    require_user(request, *MANAGERS)
    gw = request.match_info["gw"]

    def read() -> JsonObj:
        with request.app[ENGINE].connect() as conn:
            return list_doors(conn, gw)
    return answer(await asyncio.to_thread(read))


@api_errors
async def delete_door(request: web.Request) -> web.Response:
    user = require_user(request, *MANAGERS)
    gw, door = request.match_info["gw"], door_name(request.match_info["door"])
    return answer(await _in_transaction(request, lambda conn, now: remove_door(conn, now, actor_of(user), gw, door)))


def add_routes(app: web.Application) -> None:
    r = app.router
    gateway = {"gw": "gateway"}
    rule = "the gateway's building only"
    r.add_get("/api/v1/registry/gateways/{gw}/doors", allow(*MANAGERS, path=gateway, rule=rule)(
        api("A gateway's doors and the units they serve", tag="registry", responses={200: DoorList},
            errors=(409,))(get_doors)))
    r.add_put("/api/v1/registry/gateways/{gw}/doors/{door}",
              allow(*MANAGERS, path=gateway, body={"unit_id": "unit"}, rule=rule)(
                  api("Say which unit a gateway's door serves (null: the entrance) and whether a camera there "
                      "counts people", tag="registry", body=DoorIn, responses={200: Door}, errors=(409,))(put_door)))
    r.add_delete("/api/v1/registry/gateways/{gw}/doors/{door}", allow(*MANAGERS, path=gateway, rule=rule)(
        api("Forget a gateway's door", tag="registry", responses={200: DoorRemoved}, errors=(409,))(delete_door)))
