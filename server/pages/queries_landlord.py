"""Reads behind the landlord pages: buildings with their counts, a building's
units, declarations and cases, a unit's occupants. Only masked identity
numbers (persons.id_masked) are ever selected."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.auth.policy import AuthUser
from server.db.models import (
    OPEN_CASE_STATES,
    buildings,
    cases,
    credentials,
    grid_coordinators,
    history,
    persons,
    registrations,
    units,
)
from server.registry.queries import show_as_declared
from server.registry.service import Scope, is_move

Row = dict[str, Any]
# How long a tenant who moved out stays on the old landlord's pages.
MOVED_OUT_DAYS = 30


def _count_where(table: sa.Table, *conditions: sa.ColumnElement[bool]) -> sa.ScalarSelect[Any]:
    return sa.select(sa.func.count()).select_from(table).where(*conditions).scalar_subquery()


def list_buildings(conn: sa.Connection, user: AuthUser) -> list[Row]:
    """The user's buildings (a landlord's own, a coordinator's grids'; admins all)."""
    b, r = buildings.c, registrations.c
    query = sa.select(
        b.id, b.name, b.address, b.code,
        _count_where(units, units.c.building_id == b.id).label("units"),
        _count_where(registrations, r.building_id == b.id, r.status == "active").label("occupants"),
        _count_where(registrations, r.building_id == b.id, r.status == "pending").label("pending"),
        _count_where(cases, cases.c.building_id == b.id, cases.c.state.in_(OPEN_CASE_STATES)).label("open_cases"),
    ).order_by(b.name, b.id)
    if user.role == "landlord":
        query = query.where(b.landlord_user_id == user.id)
    elif user.role == "coordinator":  # the buildings of their grids (server/grid/scope.py)
        query = query.where(b.grid_id.in_(sa.select(grid_coordinators.c.grid_id)
                                          .where(grid_coordinators.c.user_id == user.id)))
    rows = [dict(row) for row in conn.execute(query).mappings()]
    grades = _grade_counts(conn, [row["id"] for row in rows])
    for row in rows:
        row["grades"] = grades.get(row["id"], {})
    return rows


def _grade_counts(conn: sa.Connection, building_ids: list[int]) -> dict[int, dict[str | None, int]]:
    if not building_ids:
        return {}
    u = units.c
    out: dict[int, dict[str | None, int]] = {}
    query = (sa.select(u.building_id, u.grade, sa.func.count()).where(u.building_id.in_(building_ids))
             .group_by(u.building_id, u.grade))
    for building_id, grade, count in conn.execute(query).tuples():
        out.setdefault(int(building_id), {})[grade] = int(count)
    return out


def building(conn: sa.Connection, building_id: int) -> Row | None:
    b = buildings.c
    row = conn.execute(sa.select(b.id, b.name, b.address, b.code, b.landlord_name, b.pledge_signed_at)
                       .where(b.id == building_id)).mappings().first()
    return dict(row) if row is not None else None


def building_units(conn: sa.Connection, building_id: int) -> list[Row]:
    u, r = units.c, registrations.c
    query = sa.select(
        u.id, u.number, u.floor, u.area_m2, u.rooms, u.capacity, u.grade,
        _count_where(registrations, r.unit_id == u.id, r.status == "active").label("occupants"),
        _count_where(registrations, r.unit_id == u.id, r.status == "pending").label("pending"),
    ).where(u.building_id == building_id).order_by(u.floor, u.number)
    return [dict(row) for row in conn.execute(query).mappings()]


def _registration_rows(conn: sa.Connection, *conditions: sa.ColumnElement[bool]) -> list[Row]:
    r, p, u = registrations.c, persons.c, units.c
    query = (sa.select(r.id, r.person_id, r.unit_id, r.valid_from, r.source, r.status, r.created_at,
                       p.display_name.label("name"), p.id_masked, p.phone, p.origin, u.number.label("unit"))
             .join(persons, p.id == r.person_id).join(units, u.id == r.unit_id, isouter=True)
             .where(*conditions).order_by(r.valid_from, r.id))
    return [dict(row) for row in conn.execute(query).mappings()]


def pending_declarations(conn: sa.Connection, *, building_id: int | None = None, unit_id: int | None = None,
                         viewer: AuthUser | None = None) -> list[Row]:
    """Pending registrations: tenants' declarations and moves awaiting
    verification, the person as declared with them (never the person's
    record, which may be another landlord's tenant's). ``move``: made
    pending by the move rule; ``awaits_coordinator``: the viewer may not
    confirm it (a landlord, for a move, or for a declaration whose person
    is registered outside their buildings)."""
    r = registrations.c
    where = [r.status == "pending"]
    if building_id is not None:
        where.append(r.building_id == building_id)
    if unit_id is not None:
        where.append(r.unit_id == unit_id)
    rows = _registration_rows(conn, *where)
    show_as_declared(conn, rows)
    elsewhere = _registered_outside(conn, rows, viewer)
    for row in rows:
        row["move"] = is_move(row["source"])
        row["awaits_coordinator"] = (viewer is not None and viewer.role == "landlord"
                                     and (row["move"] or row["id"] in elsewhere))
    return rows


def _registered_outside(conn: sa.Connection, rows: list[Row], viewer: AuthUser | None) -> set[int]:
    """The pending registrations (of ``rows``) whose person is registered in
    a building outside a landlord viewer's own: the landlord may not confirm
    those (server/registry/service.confirm_registration). The same one bit a
    confirmation attempt would answer, said before the click."""
    if viewer is None or viewer.role != "landlord" or not rows:
        return set()
    within = Scope.of(viewer.role, viewer.id).buildings()
    assert within is not None
    r, other = registrations.c, registrations.alias("other")
    query = (sa.select(r.id).join(other, other.c.person_id == r.person_id)
             .where(r.id.in_([row["id"] for row in rows]), other.c.id != r.id, other.c.status == "active",
                    other.c.building_id.not_in(within)))
    return {int(i) for i in conn.execute(query).scalars()}


def moved_out(conn: sa.Connection, now: datetime, *, building_id: int | None = None,
              unit_id: int | None = None) -> list[Row]:
    """Registrations of the building (unit) that a move to another building
    ended (reason "moved", traced ``registered_elsewhere``) in the last
    MOVED_OUT_DAYS days, newest first: the old landlord's notice that a
    tenant moved and their cards stopped working. Which building they moved
    to is never read here. A landlord's own deregistrations are not listed:
    they know of those."""
    r, p, u = registrations.c, persons.c, units.c
    query = (sa.select(r.id, r.unit_id, r.ended_at, p.display_name.label("name"), u.number.label("unit"))
             .join(persons, p.id == r.person_id).join(units, u.id == r.unit_id, isouter=True)
             .where(r.status == "ended", r.end_reason == "moved", r.updated_at >= now - timedelta(days=MOVED_OUT_DAYS))
             .order_by(r.updated_at.desc(), r.id.desc()))
    if building_id is not None:
        query = query.where(r.building_id == building_id)
    if unit_id is not None:
        query = query.where(r.unit_id == unit_id)
    rows = [dict(row) for row in conn.execute(query).mappings()]
    if rows:
        h = history.c
        traces = conn.execute(sa.select(h.entity_id, h.changes).where(
            h.entity == "registration", h.entity_id.in_([row["id"] for row in rows]), h.action == "ended"))
        elsewhere = {int(i) for i, changes in traces.tuples() if (changes or {}).get("registered_elsewhere")}
        rows = [row for row in rows if row["id"] in elsewhere]
    return rows


def occupants(conn: sa.Connection, unit_id: int) -> list[Row]:
    """The unit's active registrations, each with its cards (active ones)."""
    rows = _registration_rows(conn, registrations.c.unit_id == unit_id, registrations.c.status == "active")
    if rows:
        c = credentials.c
        cards: dict[int, list[str]] = {}
        query = (sa.select(c.registration_id, c.value).where(c.registration_id.in_([row["id"] for row in rows]),
                                                            c.revoked_at.is_(None)).order_by(c.id))
        for reg_id, value in conn.execute(query).tuples():
            cards.setdefault(int(reg_id), []).append(str(value))
        for row in rows:
            row["cards"] = cards.get(row["id"], [])
    return rows


def open_cases(conn: sa.Connection, building_id: int) -> list[Row]:
    """Open and acknowledged cases of the building, with the unit number and
    the person's name (never their number) where the case names them."""
    c, u, p = cases.c, units.c, persons.c
    query = (sa.select(c.id, c.kind, c.state, c.unit_id, c.person_id, c.registration_id, c.evidence_at,
                       c.opened_at, c.due_at, c.evidence, u.number.label("unit"), p.display_name.label("name"))
             .join(units, u.id == c.unit_id, isouter=True).join(persons, p.id == c.person_id, isouter=True)
             .where(c.building_id == building_id, c.state.in_(OPEN_CASE_STATES)).order_by(c.opened_at, c.id))
    return [dict(row) for row in conn.execute(query).mappings()]


def unit(conn: sa.Connection, unit_id: int) -> Row | None:
    u, b = units.c, buildings.c
    row = conn.execute(
        sa.select(u.id, u.building_id, u.number, u.floor, u.area_m2, u.rooms, u.capacity, u.grade,
                  b.name.label("building_name"), b.address)
        .join(buildings, b.id == u.building_id).where(u.id == unit_id)).mappings().first()
    return dict(row) if row is not None else None


def building_of_registration(conn: sa.Connection, registration_id: int) -> int | None:
    found = conn.execute(sa.select(registrations.c.building_id)
                         .where(registrations.c.id == registration_id)).scalar_one_or_none()
    return int(found) if found is not None else None


def unit_of_registration(conn: sa.Connection, registration_id: int) -> int | None:
    found = conn.execute(sa.select(registrations.c.unit_id)
                         .where(registrations.c.id == registration_id)).scalar_one_or_none()
    return int(found) if found is not None else None


def building_of_case(conn: sa.Connection, case_id: int) -> int | None:
    found = conn.execute(sa.select(cases.c.building_id).where(cases.c.id == case_id)).scalar_one_or_none()
    return int(found) if found is not None else None
