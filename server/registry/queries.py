"""Read queries of the registry API. Every person appears with the masked
identity number only (``persons.id_masked``); the cipher never leaves here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.db.models import (
    OPEN_CASE_STATES,
    areas,
    buildings,
    cases,
    credentials,
    history,
    persons,
    registrations,
    units,
    users,
)

JsonObj = dict[str, Any]
OCCUPYING = ("pending", "active")
# Registrations that tie a person to a building (service.PERSON_TIES).
PERSON_TIES = ("active", "ended")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _plain(row: sa.RowMapping) -> JsonObj:
    return {k: _iso(v) if isinstance(v, datetime) else v for k, v in row.items()}


# --- areas ---------------------------------------------------------------

def list_areas(conn: sa.Connection, parent_code: str | None) -> list[JsonObj]:
    """Children of ``parent_code`` (flat), or the whole hierarchy as a tree."""
    parent = areas.alias("parent")
    rows = [_plain(r) for r in conn.execute(
        sa.select(areas.c.id, areas.c.level, areas.c.code, areas.c.name, parent.c.code.label("parent_code"))
        .outerjoin(parent, parent.c.id == areas.c.parent_id).order_by(areas.c.code)).mappings()]
    if parent_code is not None:
        return [r for r in rows if r["parent_code"] == parent_code]
    by_code: dict[str, JsonObj] = {r["code"]: {**r, "children": []} for r in rows}
    roots: list[JsonObj] = []
    for node in by_code.values():
        owner = by_code.get(node["parent_code"]) if node["parent_code"] else None
        (owner["children"] if owner is not None else roots).append(node)
    return roots


def area_exists(conn: sa.Connection, code: str) -> bool:
    return conn.execute(sa.select(areas.c.id).where(areas.c.code == code)).first() is not None


# --- buildings and units ---------------------------------------------------

def _building_columns() -> list[sa.ColumnElement[Any]]:
    grid = areas.alias("grid")
    return [buildings.c.id, buildings.c.name, buildings.c.code, buildings.c.address,
            sa.select(grid.c.code).where(grid.c.id == buildings.c.grid_id).scalar_subquery().label("grid_code"),
            buildings.c.landlord_name, buildings.c.landlord_phone, buildings.c.landlord_user_id,
            buildings.c.is_rental, buildings.c.pledge_signed_at, buildings.c.rooms, buildings.c.created_at,
            buildings.c.updated_at]


def list_buildings(conn: sa.Connection, *, grid_code: str | None, landlord_user_id: int | None,
                   limit: int, within: sa.Select[Any] | None = None) -> list[JsonObj]:
    """Buildings by id; ``within``: only those the sub-select names (the
    caller's scope, server/auth/scopes.scope_buildings)."""
    query = sa.select(*_building_columns()).order_by(buildings.c.id).limit(limit)
    if within is not None:
        query = query.where(buildings.c.id.in_(within))
    if grid_code is not None:
        query = query.where(buildings.c.grid_id == sa.select(areas.c.id).where(areas.c.code == grid_code)
                            .scalar_subquery())
    if landlord_user_id is not None:
        query = query.where(buildings.c.landlord_user_id == landlord_user_id)
    return [_plain(r) for r in conn.execute(query).mappings()]


def _occupants_count() -> sa.ScalarSelect[Any]:
    return (sa.select(sa.func.count()).select_from(registrations)
            .where(registrations.c.unit_id == units.c.id, registrations.c.status == "active").scalar_subquery())


def _open_cases_count() -> sa.ScalarSelect[Any]:
    return (sa.select(sa.func.count()).select_from(cases)
            .where(cases.c.unit_id == units.c.id, cases.c.state.in_(OPEN_CASE_STATES)).scalar_subquery())


_UNIT_COLUMNS = (units.c.id, units.c.building_id, units.c.number, units.c.floor, units.c.area_m2, units.c.rooms,
                 units.c.capacity, units.c.grade, units.c.grade_score, units.c.grade_at)


def building_detail(conn: sa.Connection, building_id: int) -> JsonObj | None:
    row = conn.execute(sa.select(*_building_columns()).where(buildings.c.id == building_id)).mappings().first()
    if row is None:
        return None
    unit_rows = conn.execute(
        sa.select(*_UNIT_COLUMNS, _occupants_count().label("occupants"), _open_cases_count().label("open_cases"))
        .where(units.c.building_id == building_id).order_by(units.c.number)).mappings()
    return {**_plain(row), "units": [_plain(u) for u in unit_rows]}


def unit_building(conn: sa.Connection, unit_id: int) -> int | None:
    value = conn.execute(sa.select(units.c.building_id).where(units.c.id == unit_id)).scalar()
    return int(value) if value is not None else None


def unit_detail(conn: sa.Connection, unit_id: int) -> JsonObj | None:
    row = conn.execute(sa.select(*_UNIT_COLUMNS, units.c.created_at, units.c.updated_at,
                                 _open_cases_count().label("open_cases"))
                       .where(units.c.id == unit_id)).mappings().first()
    if row is None:
        return None
    people = conn.execute(
        sa.select(registrations.c.id.label("registration_id"), registrations.c.status, registrations.c.source,
                  registrations.c.valid_from.label("arrived_at"), persons.c.id.label("person_id"),
                  persons.c.display_name.label("name"), persons.c.id_masked)
        .join(persons, persons.c.id == registrations.c.person_id)
        .where(registrations.c.unit_id == unit_id, registrations.c.status.in_(OCCUPYING))
        .order_by(registrations.c.valid_from, registrations.c.id)).mappings()
    occupants = [_plain(p) for p in people]
    show_as_declared(conn, occupants, id_key="registration_id")
    cards = conn.execute(
        sa.select(credentials.c.id, credentials.c.format, credentials.c.value, credentials.c.person_id,
                  credentials.c.registration_id, credentials.c.issued_at)
        .where(credentials.c.unit_id == unit_id, credentials.c.revoked_at.is_(None)).order_by(credentials.c.id))
    return {**_plain(row), "occupants": occupants,
            "occupant_count": sum(1 for p in occupants if p["status"] == "active"),
            "credentials": [_plain(c) for c in cards.mappings()]}


# --- persons ---------------------------------------------------------------

def person_detail(conn: sa.Connection, person_id: int) -> JsonObj | None:
    row = conn.execute(sa.select(persons.c.id, persons.c.display_name.label("name"), persons.c.id_masked,
                                 persons.c.sex, persons.c.birth_year, persons.c.phone, persons.c.origin,
                                 persons.c.created_at, persons.c.updated_at)
                       .where(persons.c.id == person_id)).mappings().first()
    if row is None:
        return None
    regs = list_registrations(conn, person_id=person_id, limit=100)
    return {**_plain(row), "registrations": regs}


def person_by_digest(conn: sa.Connection, digest: str) -> JsonObj | None:
    row = conn.execute(sa.select(persons.c.id, persons.c.id_masked.label("masked"),
                                 persons.c.display_name.label("name"))
                       .where(persons.c.id_digest == digest)).mappings().first()
    return dict(row) if row is not None else None


def person_lives_with_landlord(conn: sa.Connection, person_id: int, landlord_user_id: int) -> bool:
    """Is or was the person registered (active or ended: accepted, not merely
    declared or claimed) in one of the landlord's buildings?"""
    return conn.execute(
        sa.select(registrations.c.id).join(buildings, buildings.c.id == registrations.c.building_id)
        .where(registrations.c.person_id == person_id, buildings.c.landlord_user_id == landlord_user_id,
               registrations.c.status.in_(PERSON_TIES))
        .limit(1)).first() is not None


def show_as_declared(conn: sa.Connection, rows: list[JsonObj], *, id_key: str = "id") -> None:
    """A pending or rejected registration shows the person as they were
    declared with it (the name, phone and origin the tenant or the
    registering landlord typed), never the person's record: that record may
    be another landlord's tenant's, and a declaration or a move awaiting
    verification must not read it. Rows written before declarations were
    kept show the record only when the person was created by that very
    registration (the same moment), else no name."""
    waiting = {int(r[id_key]): r for r in rows if r.get("status") in ("pending", "rejected")}
    if not waiting:
        return
    declared = declared_fields(conn, list(waiting))
    legacy = [i for i in waiting if i not in declared]
    own: set[int] = set()
    if legacy:
        query = (sa.select(registrations.c.id).join(persons, persons.c.id == registrations.c.person_id)
                 .where(registrations.c.id.in_(legacy), persons.c.created_at == registrations.c.created_at))
        own = {int(i) for i in conn.execute(query).scalars()}
    for reg_id, row in waiting.items():
        if reg_id in own:
            continue
        given = declared.get(reg_id, {})
        for key in ("name", "phone", "origin"):
            if key in row:
                row[key] = given.get(key) if key != "name" else (given.get("name") or "")


def declared_fields(conn: sa.Connection, registration_ids: list[int]) -> dict[int, JsonObj]:
    """The fields declared with each registration (service._declared, kept on
    its "declared" history row)."""
    if not registration_ids:
        return {}
    h = history.c
    query = (sa.select(h.entity_id, h.changes)
             .where(h.entity == "registration", h.entity_id.in_(registration_ids), h.action == "declared")
             .order_by(h.id))
    out: dict[int, JsonObj] = {}
    for reg_id, changes in conn.execute(query).tuples():
        found = (changes or {}).get("declared")
        if isinstance(found, dict):
            out.setdefault(int(reg_id), found)
    return out


# --- registrations and credentials ----------------------------------------

def credential_building(conn: sa.Connection, credential_id: int) -> int | None:
    value = conn.execute(sa.select(credentials.c.building_id).where(credentials.c.id == credential_id)).scalar()
    return int(value) if value is not None else None


def list_registrations(conn: sa.Connection, *, unit_id: int | None = None, person_id: int | None = None,
                       status: str | None = None, building_id: int | None = None,
                       landlord_user_id: int | None = None, within: sa.Select[Any] | None = None,
                       limit: int = 200) -> list[JsonObj]:
    """Registrations, newest first; ``landlord_user_id`` keeps those of the
    landlord's buildings only. Pending and rejected ones name the person as
    declared (``show_as_declared``)."""
    return _list_registrations(conn, unit_id=unit_id, person_id=person_id, status=status, building_id=building_id, within=within,
                               landlord_user_id=landlord_user_id, limit=limit)


def registrations_within(conn: sa.Connection, within: sa.Select[Any] | None, *, person_id: int,
                         limit: int = 200) -> list[JsonObj]:
    """A person's registrations in the buildings ``within`` selects (None: all)."""
    return _list_registrations(conn, person_id=person_id, within=within, limit=limit)


def _list_registrations(conn: sa.Connection, *, unit_id: int | None = None, person_id: int | None = None,
                        status: str | None = None, building_id: int | None = None,
                        landlord_user_id: int | None = None, within: sa.Select[Any] | None = None,
                        limit: int = 200) -> list[JsonObj]:
    query = (sa.select(registrations.c.id, registrations.c.person_id, persons.c.display_name.label("name"),
                       persons.c.id_masked, registrations.c.building_id, registrations.c.unit_id,
                       units.c.number.label("unit_number"), registrations.c.status, registrations.c.source,
                       registrations.c.valid_from.label("arrived_at"), registrations.c.ended_at.label("departed_at"),
                       registrations.c.end_reason, registrations.c.confirmed_at, registrations.c.confirmed_by,
                       registrations.c.created_at)
             .join(persons, persons.c.id == registrations.c.person_id)
             .outerjoin(units, units.c.id == registrations.c.unit_id)
             .order_by(registrations.c.id.desc()).limit(limit))
    for column, value in ((registrations.c.unit_id, unit_id), (registrations.c.person_id, person_id),
                          (registrations.c.status, status), (registrations.c.building_id, building_id)):
        if value is not None:
            query = query.where(column == value)
    if landlord_user_id is not None:
        query = query.where(registrations.c.building_id.in_(
            sa.select(buildings.c.id).where(buildings.c.landlord_user_id == landlord_user_id)))
    if within is not None:
        query = query.where(registrations.c.building_id.in_(within))
    rows = [_plain(r) for r in conn.execute(query).mappings()]
    show_as_declared(conn, rows)
    _attach_credentials(conn, rows)
    return rows


def _attach_credentials(conn: sa.Connection, rows: list[JsonObj]) -> None:
    """Each registration's credentials (links to cards), active ones and revoked."""
    by_id = {r["id"]: r for r in rows}
    for r in rows:
        r["credentials"] = []
    if not by_id:
        return
    creds = conn.execute(sa.select(credentials.c.id, credentials.c.registration_id, credentials.c.format,
                                   credentials.c.value, credentials.c.issued_at, credentials.c.revoked_at)
                         .where(credentials.c.registration_id.in_(list(by_id)))
                         .order_by(credentials.c.id)).mappings()
    for c in creds:
        doc = _plain(c)
        by_id[doc.pop("registration_id")]["credentials"].append(doc)


# --- history and ownership -------------------------------------------------

HISTORY_ENTITIES = ("area", "building", "unit", "person", "registration", "credential", "door")


def list_history(conn: sa.Connection, *, entity: str | None, entity_id: int | None, limit: int) -> list[JsonObj]:
    query = sa.select(history).order_by(history.c.id.desc()).limit(limit)
    if entity is not None:
        query = query.where(history.c.entity == entity)
    if entity_id is not None:
        query = query.where(history.c.entity_id == entity_id)
    return [_plain(r) for r in conn.execute(query).mappings()]


def entity_building(conn: sa.Connection, entity: str, entity_id: int) -> int | None:
    """The building an entity belongs to, for a landlord's right to read its history."""
    if entity == "building":
        found = conn.execute(sa.select(buildings.c.id).where(buildings.c.id == entity_id)).scalar()
    elif entity == "unit":
        found = unit_building(conn, entity_id)
    elif entity == "registration":
        found = conn.execute(sa.select(registrations.c.building_id).where(registrations.c.id == entity_id)).scalar()
    elif entity == "credential":
        found = credential_building(conn, entity_id)
    else:
        found = None
    return int(found) if found is not None else None


def user_id_by_username(conn: sa.Connection, username: str) -> int | None:
    value = conn.execute(sa.select(users.c.id).where(users.c.username == username)).scalar()
    return int(value) if value is not None else None
