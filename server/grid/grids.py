"""Coordinators assigned to grids (网格 / 网格员). A grid is an area of level
"grid"; only users with the role coordinator are assigned (administrators
reach every grid anyway). Assigning twice is harmless; every change is in
the history (entity "grid"). Unassigning leaves the coordinator's tasks
with them: the dispatcher reassigns what should move (docs/grid.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.db.models import areas, grid_coordinators, users
from server.grid.errors import GridInputError, GridNotFound
from server.registry import history as trail

JsonObj = dict[str, Any]
# For the API's messages, which name the user by id (the request did).
_ROLE_EN = {"admin": "an administrator", "landlord": "a landlord", "coordinator": "a coordinator",
            "police": "a police officer"}


def grid_row(conn: sa.Connection, grid_id: int) -> sa.RowMapping:
    if not 0 < grid_id < 2**63:
        raise GridNotFound("grid", grid_id)
    row = conn.execute(sa.select(areas.c.id, areas.c.code, areas.c.name, areas.c.level)
                       .where(areas.c.id == grid_id)).mappings().first()
    if row is None:
        raise GridNotFound("grid", grid_id)
    if row["level"] != "grid":
        raise GridInputError("grid", f"area {row['code']} is {_article(row['level'])}, not a grid")
    return row


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def grid_by_code(conn: sa.Connection, code: str) -> int:
    row = conn.execute(sa.select(areas.c.id, areas.c.level).where(areas.c.code == code)).first()
    if row is None:
        raise GridNotFound("grid", code)
    if row.level != "grid":
        raise GridInputError("grid", f"area {code} is {_article(row.level)}, not a grid")
    return int(row.id)


def user_by_name(conn: sa.Connection, username: str) -> int:
    user_id = conn.execute(sa.select(users.c.id).where(users.c.username == username)).scalar()
    if user_id is None:
        raise GridNotFound("user", username)
    return int(user_id)


def _coordinator(conn: sa.Connection, user_id: int, field: str) -> None:
    if not 0 < user_id < 2**63:
        raise GridInputError(field, f"no user {user_id}")
    row = conn.execute(sa.select(users.c.role, users.c.disabled_at).where(users.c.id == user_id)).first()
    if row is None:
        raise GridInputError(field, f"no user {user_id}")
    if row.role != "coordinator":
        raise GridInputError(field, f"user {user_id} is {_ROLE_EN.get(row.role, row.role)}; only coordinators are "
                             "assigned to grids")
    if row.disabled_at is not None:
        raise GridInputError(field, f"user {user_id} is disabled")


def assign(conn: sa.Connection, now: datetime, actor: str, grid_id: int, user_id: int) -> bool:
    """True if the assignment is new, False if it existed already."""
    grid_row(conn, grid_id)
    _coordinator(conn, user_id, "user_id")
    exists = conn.execute(sa.select(grid_coordinators.c.user_id).where(
        grid_coordinators.c.grid_id == grid_id, grid_coordinators.c.user_id == user_id)).first()
    if exists is not None:
        return False
    conn.execute(sa.insert(grid_coordinators).values(grid_id=grid_id, user_id=user_id, assigned_at=now,
                                                     assigned_by=actor[:64]))
    trail.record(conn, now, actor, "grid", grid_id, "coordinator_assigned", {"user_id": user_id})
    return True


def unassign(conn: sa.Connection, now: datetime, actor: str, grid_id: int, user_id: int) -> None:
    grid_row(conn, grid_id)
    if not 0 < user_id < 2**63:
        raise GridNotFound("assignment of user to grid", f"{user_id} / {grid_id}")
    gone = conn.execute(sa.delete(grid_coordinators).where(
        grid_coordinators.c.grid_id == grid_id, grid_coordinators.c.user_id == user_id)).rowcount
    if not gone:
        raise GridNotFound("assignment of user to grid", f"{user_id} / {grid_id}")
    trail.record(conn, now, actor, "grid", grid_id, "coordinator_unassigned", {"user_id": user_id})


def coordinators_of(conn: sa.Connection, grid_id: int) -> list[JsonObj]:
    grid_row(conn, grid_id)
    g, u = grid_coordinators.c, users.c
    rows = conn.execute(sa.select(u.id, u.username, u.display_name, g.assigned_at, g.assigned_by)
                        .select_from(grid_coordinators.join(users, users.c.id == g.user_id))
                        .where(g.grid_id == grid_id).order_by(u.username)).mappings()
    return [dict(r) for r in rows]


def list_assignments(conn: sa.Connection, *, grid_id: int | None = None) -> list[JsonObj]:
    """Every grid with its coordinators (grids without any included), by grid code."""
    a, g, u = areas.c, grid_coordinators.c, users.c
    query = (sa.select(a.id, a.code, a.name, u.id.label("user_id"), u.username, u.display_name, g.assigned_at)
             .select_from(areas.outerjoin(grid_coordinators, g.grid_id == a.id)
                          .outerjoin(users, u.id == g.user_id))
             .where(a.level == "grid").order_by(a.code, u.username))
    if grid_id is not None:
        query = query.where(a.id == grid_id)
    grids: dict[int, JsonObj] = {}
    for row in conn.execute(query).mappings():
        doc = grids.setdefault(int(row["id"]), {"id": row["id"], "code": row["code"], "name": row["name"],
                                                "coordinators": []})
        if row["user_id"] is not None:
            doc["coordinators"].append({"id": row["user_id"], "username": row["username"],
                                        "display_name": row["display_name"], "assigned_at": row["assigned_at"]})
    return list(grids.values())
