"""What the database already holds that an import is checked against, read
in a few set queries rather than one per row."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from server.db.models import areas, buildings, credentials, persons, registrations, units

T = TypeVar("T")
# Bound parameters per IN (...): well under SQLite's and psycopg's limits.
CHUNK = 500


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass(frozen=True)
class AreaRow:
    id: int
    level: str
    name: str
    parent_code: str | None


@dataclass(frozen=True)
class UnitRow:
    id: int
    building_id: int
    area_m2: float
    rooms: int
    floor: int | None


@dataclass(frozen=True)
class PersonRow:
    id: int
    display_name: str
    phone: str | None
    origin: str | None


@dataclass(frozen=True)
class Stay:
    registration_id: int
    unit_id: int | None
    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class CardRow:
    id: int
    registration_id: int | None
    unit_id: int | None
    person_id: int | None


def all_areas(conn: sa.Connection) -> dict[str, AreaRow]:
    parent = areas.alias("parent")
    query = (sa.select(areas.c.code, areas.c.id, areas.c.level, areas.c.name, parent.c.code)
             .outerjoin(parent, parent.c.id == areas.c.parent_id))
    return {code: AreaRow(int(i), level, name, parent_code)
            for code, i, level, name, parent_code in conn.execute(query).tuples()}


def all_buildings(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    """Buildings with a code, by code, with the fields an address row may give."""
    b = buildings.c
    query = (sa.select(b.id, b.code, b.address, areas.c.code.label("grid_code"), b.landlord_name, b.landlord_phone,
                       b.is_rental, b.pledge_signed_at)
             .select_from(buildings.outerjoin(areas, areas.c.id == b.grid_id)).where(b.code.is_not(None)))
    return {row["code"]: dict(row) for row in conn.execute(query).mappings()}


def all_units(conn: sa.Connection) -> dict[tuple[int, str], UnitRow]:
    u = units.c
    query = sa.select(u.id, u.building_id, u.number, u.area_m2, u.rooms, u.floor)
    return {(int(bid), number): UnitRow(int(i), int(bid), area, rooms, floor)
            for i, bid, number, area, rooms, floor in conn.execute(query).tuples()}


def persons_by_digest(conn: sa.Connection, digests: Iterable[str]) -> dict[str, PersonRow]:
    p = persons.c
    found: dict[str, PersonRow] = {}
    for part in chunks(sorted(set(digests))):
        query = sa.select(p.id_digest, p.id, p.display_name, p.phone, p.origin).where(p.id_digest.in_(part))
        for digest, i, name, phone, origin in conn.execute(query).tuples():
            found[digest] = PersonRow(int(i), name, phone, origin)
    return found


def stays_of(conn: sa.Connection, person_ids: Iterable[int]) -> dict[int, list[Stay]]:
    """Active and ended registrations (pending and rejected ones are no stay)."""
    r = registrations.c
    found: dict[int, list[Stay]] = {}
    for part in chunks(sorted(set(person_ids))):
        query = (sa.select(r.person_id, r.id, r.unit_id, r.valid_from, r.ended_at)
                 .where(r.person_id.in_(part), r.status.in_(("active", "ended"))))
        for person_id, reg_id, unit_id, start, end in conn.execute(query).tuples():
            found.setdefault(int(person_id), []).append(Stay(int(reg_id), unit_id, start, end))
    return found


def active_cards(conn: sa.Connection, building_ids: Iterable[int], fmt: str) -> dict[tuple[int, str], CardRow]:
    c = credentials.c
    found: dict[tuple[int, str], CardRow] = {}
    for part in chunks(sorted(set(building_ids))):
        query = (sa.select(c.building_id, c.value, c.id, c.registration_id, c.unit_id, c.person_id)
                 .where(c.building_id.in_(part), c.format == fmt, c.revoked_at.is_(None)))
        for bid, value, i, reg_id, unit_id, person_id in conn.execute(query).tuples():
            found[(int(bid), value)] = CardRow(int(i), reg_id, unit_id, person_id)
    return found


def unit_labels(conn: sa.Connection, unit_ids: Iterable[int]) -> dict[int, str]:
    """``<building code>/<unit number>`` for messages about existing registrations."""
    labels: dict[int, str] = {}
    for part in chunks(sorted(set(unit_ids))):
        query = (sa.select(units.c.id, buildings.c.code, buildings.c.id, units.c.number)
                 .join(buildings, buildings.c.id == units.c.building_id).where(units.c.id.in_(part)))
        for unit_id, code, building_id, number in conn.execute(query).tuples():
            labels[int(unit_id)] = f"{code or f'building {building_id}'}/{number}"
    return labels
