"""Which grids a coordinator works, and what that lets them reach. An
administrator reaches everything; a coordinator the buildings, units and
tasks of the grids they are assigned to (grid_coordinators), plus tasks
assigned to them personally; everyone else nothing. Each check is one
indexed query, since the coordinator's unit page asks on every scan."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from server.db.models import buildings, grid_coordinators, units

if TYPE_CHECKING:
    from server.auth.policy import AuthUser


def grid_ids_of(conn: sa.Connection, user_id: int) -> frozenset[int]:
    """The grids a user is assigned to (empty for anyone not a coordinator)."""
    rows = conn.execute(sa.select(grid_coordinators.c.grid_id).where(grid_coordinators.c.user_id == user_id))
    return frozenset(int(g) for g in rows.scalars())


def coordinator_has_building(conn: sa.Connection, user_id: int, building_id: int) -> bool:
    query = (sa.select(sa.literal(1)).select_from(buildings)
             .join(grid_coordinators, grid_coordinators.c.grid_id == buildings.c.grid_id)
             .where(buildings.c.id == building_id, grid_coordinators.c.user_id == user_id))
    return conn.execute(query).first() is not None


def can_work_building(conn: sa.Connection, user: AuthUser, building_id: int) -> bool:
    if user.role == "admin":
        return True
    return user.role == "coordinator" and coordinator_has_building(conn, user.id, building_id)


def can_work_unit(conn: sa.Connection, user: AuthUser, unit_id: int) -> bool:
    """May this user work the unit (its page, patrols, escalations)? False
    for a unit that does not exist."""
    if user.role == "admin":
        return conn.execute(sa.select(units.c.id).where(units.c.id == unit_id)).first() is not None
    if user.role != "coordinator":
        return False
    query = (sa.select(sa.literal(1)).select_from(units)
             .join(buildings, buildings.c.id == units.c.building_id)
             .join(grid_coordinators, grid_coordinators.c.grid_id == buildings.c.grid_id)
             .where(units.c.id == unit_id, grid_coordinators.c.user_id == user.id))
    return conn.execute(query).first() is not None


def can_work_grid(conn: sa.Connection, user: AuthUser, grid_id: int) -> bool:
    if user.role == "admin":
        return True
    if user.role != "coordinator":
        return False
    query = sa.select(sa.literal(1)).where(grid_coordinators.c.grid_id == grid_id,
                                           grid_coordinators.c.user_id == user.id)
    return conn.execute(query).first() is not None
