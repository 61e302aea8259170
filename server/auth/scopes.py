"""Which objects a caller may name: the scope half of the route policy
(server/auth/policy.py). An administrator reaches everything; a landlord
what belongs to their own buildings; a coordinator what belongs to the
buildings of the grids assigned to them (and tasks assigned to them);
police the buildings and units of their jurisdiction (an area code given
to the police client or officer; none: the whole registry) and nothing
else by id: the police API finds persons by identity number, never by a
row id. Every object kind is anchored to buildings (or, for grids and
tasks, to grids), and each check is one indexed query.

A kind that does not exist and a kind outside the caller's scope look the
same to ``reaches``: False. That is what keeps the answers of the two
cases identical (no existence oracle)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import sqlalchemy as sa

from server.auth.identity import AuthUser
from server.db.models import (
    areas,
    attachments,
    buildings,
    cases,
    credentials,
    events,
    gateway_enrolments,
    gateways,
    grid_coordinators,
    patrols,
    police_principals,
    problem_reports,
    registrations,
    tasks,
    units,
)

# Registrations that tie a person to a building for a landlord or a
# coordinator: ones that were accepted at some point. A pending one (a
# tenant's declaration, or someone's claim to have a person moving in)
# does not make the person's record readable.
PERSON_TIES = ("active", "ended")

BuildingAnchor = Callable[[object], sa.Select[tuple[int]] | None]


def _column_of(table: sa.Table, column: str) -> BuildingAnchor:
    def anchor(ident: object) -> sa.Select[tuple[int]]:
        return sa.select(table.c[column]).where(table.c.id == ident)
    return anchor


def _event(ident: object) -> sa.Select[tuple[int]]:
    # A door event belongs to the building of the gateway that sent it.
    gateway = sa.select(events.c.gateway_id).where(events.c.id == ident).scalar_subquery()
    return sa.select(gateways.c.building_id).where(gateways.c.id == gateway)


def _person(ident: object) -> sa.Select[tuple[int]]:
    return sa.select(registrations.c.building_id).where(registrations.c.person_id == ident,
                                                         registrations.c.status.in_(PERSON_TIES))


# Kinds whose scope is "the building(s) they belong to".
BUILDING_ANCHORS: dict[str, BuildingAnchor] = {
    "building": _column_of(buildings, "id"),
    "unit": _column_of(units, "building_id"),
    "registration": _column_of(registrations, "building_id"),
    "credential": _column_of(credentials, "building_id"),
    "case": _column_of(cases, "building_id"),
    "gateway": _column_of(gateways, "building_id"),
    # A terminal's one-time enrolment code (server/fleet/enrol.py).
    "enrolment": _column_of(gateway_enrolments, "building_id"),
    "event": _event,
    "person": _person,
}
# Kinds police may name by id: addresses, for the address check; door
# events, for a camera's snapshot (server/snapshots).
POLICE_KINDS = ("building", "unit", "event")
# Kinds a coordinator reaches through grids, which landlords never reach.
GRID_KINDS = ("grid", "task")
KINDS = (*BUILDING_ANCHORS, *GRID_KINDS, "attachment")


def reaches(conn: sa.Connection, user: AuthUser, kind: str, ident: int | str) -> bool:
    """May ``user`` name this object? False for one that does not exist,
    except for an administrator (whose handlers answer 404 themselves)."""
    if kind not in KINDS:
        raise ValueError(f"unknown object kind {kind!r}")
    if user.role == "admin":
        return True
    if user.role == "police":
        return kind in POLICE_KINDS and _owns(conn, user, BUILDING_ANCHORS[kind](ident))
    if user.role not in ("landlord", "coordinator"):
        return False
    if kind == "attachment":
        building_id = attachment_building(conn, int(ident))
        return building_id is not None and _owns(conn, user, sa.select(sa.literal(building_id)))
    if kind in GRID_KINDS:
        return user.role == "coordinator" and _grid_reach(conn, user.id, kind, int(ident))
    return _owns(conn, user, BUILDING_ANCHORS[kind](ident))


def scope_buildings(role: str, user_id: int | None) -> sa.Select[tuple[int]] | None:
    """The ids of the buildings in a caller's scope, as a sub-select for
    lists to filter by; None: every building (an administrator)."""
    b = buildings.c
    if role == "admin":
        return None
    if role == "landlord":
        return sa.select(b.id).where(b.landlord_user_id == user_id)
    if role == "coordinator":
        g = grid_coordinators.c
        return sa.select(b.id).join(grid_coordinators, g.grid_id == b.grid_id).where(g.user_id == user_id)
    if role == "police" and user_id is not None:
        return police_buildings(user_id)
    return sa.select(b.id).where(sa.false())


_GRID, _COMMUNITY, _STREET, _DISTRICT = (areas.alias(n) for n in ("g", "c", "s", "d"))


@functools.lru_cache(maxsize=4096)
def police_buildings(user_id: int) -> sa.Select[tuple[int]]:
    """The buildings in a police caller's jurisdiction: those whose grid,
    community, street or district has the jurisdiction's code; every
    building when the caller has none (or is an officer without settings).

    Cached per user: building the statement (four aliases' column proxies)
    cost more than a third of a police check's CPU. The jurisdiction itself
    is read by the statement when it runs, so a changed one applies at once."""
    b = buildings.c
    grid, community, street, district = _GRID, _COMMUNITY, _STREET, _DISTRICT
    jurisdiction = (sa.select(police_principals.c.jurisdiction)
                    .where(police_principals.c.user_id == user_id).scalar_subquery())
    return (sa.select(b.id).select_from(
        buildings.outerjoin(grid, grid.c.id == b.grid_id)
        .outerjoin(community, community.c.id == grid.c.parent_id)
        .outerjoin(street, street.c.id == community.c.parent_id)
        .outerjoin(district, district.c.id == street.c.parent_id))
        .where(sa.or_(jurisdiction.is_(None),
                      jurisdiction.in_([grid.c.code, community.c.code, street.c.code, district.c.code]))))


def _owns(conn: sa.Connection, user: AuthUser, anchor: sa.Select[tuple[int]] | None) -> bool:
    # The same scope as scope_buildings, written as one join per role: this
    # runs on every scoped request (in the session's round trip), and the
    # planner does better with a join than with two IN sub-selects.
    if anchor is None:
        return False
    b, g = buildings.c, grid_coordinators.c
    if user.role == "landlord":
        query = sa.select(sa.literal(1)).where(b.id.in_(anchor), b.landlord_user_id == user.id)
    elif user.role == "coordinator":
        query = (sa.select(sa.literal(1)).select_from(buildings)
                 .join(grid_coordinators, g.grid_id == b.grid_id)
                 .where(b.id.in_(anchor), g.user_id == user.id))
    elif user.role == "police":
        query = sa.select(sa.literal(1)).where(b.id.in_(anchor), b.id.in_(police_buildings(user.id)))
    else:
        return False
    return conn.execute(query.limit(1)).first() is not None


def _grid_reach(conn: sa.Connection, user_id: int, kind: str, ident: int) -> bool:
    mine = sa.select(grid_coordinators.c.grid_id).where(grid_coordinators.c.user_id == user_id)
    if kind == "grid":
        query = sa.select(sa.literal(1)).where(grid_coordinators.c.grid_id == ident,
                                               grid_coordinators.c.user_id == user_id)
    else:
        # A task of one of their grids, or one assigned to them personally.
        query = sa.select(sa.literal(1)).where(
            tasks.c.id == ident, sa.or_(tasks.c.grid_id.in_(mine), tasks.c.assignee_user_id == user_id))
    return conn.execute(query.limit(1)).first() is not None


def attachment_building(conn: sa.Connection, attachment_id: int) -> int | None:
    """The building of the report or patrol a photo came with. A patrol's
    photos carry its coordinator as actor and its moment as created_at
    (server/patrols/service.py), so ix_patrols_user_id_at finds the patrol."""
    row = conn.execute(sa.select(attachments.c.id, attachments.c.actor, attachments.c.created_at)
                       .where(attachments.c.id == attachment_id)).mappings().first()
    if row is None:
        return None
    found = conn.execute(sa.select(problem_reports.c.building_id)
                         .where(problem_reports.c.attachment_id == attachment_id).limit(1)).scalar()
    if found is not None:
        return int(found)
    actor = str(row["actor"])
    if actor.startswith("user:") and actor[5:].isdigit():
        rows = conn.execute(sa.select(patrols.c.building_id, patrols.c.attachment_ids)
                            .where(patrols.c.user_id == int(actor[5:]), patrols.c.at == row["created_at"]))
        for building_id, attachment_ids in rows:
            if attachment_id in (attachment_ids or []):
                return int(building_id)
    return None
