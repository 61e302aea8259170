"""The registry's rules, as functions on a connection inside the caller's
transaction: areas, buildings, units, persons, residence registrations and
the credentials that go with them. Every change leaves a row in ``history``;
every change to what a gateway lets in returns the allowlist ``Change`` to
publish after commit (``Outcome.changes``, server/access/registry.py). The
API, the pages and the simulator write the registry only through here; the
bulk import (server/registry/imports/apply_registrations.py) writes in
multi-row statements that keep the same invariants, history rows included.

Errors name the request field at fault (``InvalidInput``), the missing thing
(``NotFound``) or the state that forbids the change (``Conflict``). Identity
numbers never appear in errors, history or return values except masked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, get_args

import sqlalchemy as sa

from rentgate import wire
from server.access import allowlists
from server.access.allowlists import Change
from server.access.registry import Outcome
from server.auth.scopes import scope_buildings
from server.db.models import (
    AREA_LEVELS,
    REGISTRATION_SOURCES,
    areas,
    buildings,
    credentials,
    persons,
    registrations,
    units,
    users,
)
from server.db.models import history as history_rows
from server.registry import freetext, history
from server.registry.idnumber import InvalidIdNumber, parse_id_number
from server.registry.pii import PiiVault
from server.rules import CityRules
from server.web.errors import Conflict, InvalidInput, NotFound

JsonObj = dict[str, Any]

# The shapes of codes, phone numbers and EM4100 card numbers, shared with
# the API's input checks and the imports so all three accept the same.
CODE = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,31}")
PHONE = re.compile(r"\+?[0-9][0-9 -]{4,19}")
EM4100 = re.compile(r"[0-9A-F]{10}")
CREDENTIAL_FORMATS: tuple[str, ...] = get_args(wire.Credential.model_fields["format"].annotation)
# An arrival or departure may be recorded a little ahead (the tenant moves in
# tonight), never further: a date a year ahead is a typo.
FUTURE_SLACK = timedelta(days=1)
PARENT_LEVEL = {"district": None, "street": "district", "community": "street", "grid": "community"}
BUILDING_FIELDS = ("name", "code", "address", "grid_id", "landlord_name", "landlord_phone", "landlord_user_id",
                   "is_rental", "pledge_signed_at", "rooms")


@dataclass(frozen=True)
class PersonFields:
    id_number: str
    name: str
    phone: str | None = None
    origin: str | None = None


@dataclass(frozen=True)
class PersonRef:
    id: int
    created: bool
    masked: str


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _text(field: str, value: str | None, *, max_len: int, required: bool = True) -> str | None:
    if value is None or not value.strip():
        if required:
            raise InvalidInput(field, "is required")
        return None
    value = value.strip()
    if len(value) > max_len:
        raise InvalidInput(field, f"longer than {max_len} characters")
    # The same rule as the API's input models (server/registry/freetext.py),
    # here too because the pages, imports and simulator call the service
    # without them: no control, direction-changing or invisible characters.
    problem = freetext.hidden_character(value)
    if problem is not None:
        raise InvalidInput(field, problem)
    return value


def _phone(field: str, value: str | None) -> str | None:
    # Full-width digits from a phone keyboard are the same number.
    value = _text(field, freetext.compatible(value) if value else value, max_len=20, required=False)
    if value is not None and not PHONE.fullmatch(value):
        raise InvalidInput(field, "not a phone number (digits, optionally + - and spaces)")
    return value


def _aware(field: str, value: datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise InvalidInput(field, "needs a time zone")


def _not_future(field: str, value: datetime, now: datetime) -> None:
    if value > now + FUTURE_SLACK:
        raise InvalidInput(field, "is in the future")


# --------------------------------------------------------------------------- areas


def create_area(conn: sa.Connection, now: datetime, actor: str, *, level: str, code: str, name: str,
                parent_code: str | None) -> JsonObj:
    if level not in AREA_LEVELS:
        raise InvalidInput("level", f"must be one of {', '.join(AREA_LEVELS)}")
    if not CODE.fullmatch(code or ""):
        raise InvalidInput("code", "1-32 letters, digits, '.', '_' or '-'")
    name_ok = _text("name", name, max_len=100)
    parent_id = None
    expected_parent = PARENT_LEVEL[level]
    if expected_parent is None:
        if parent_code:
            raise InvalidInput("parent_code", "a district has no parent")
    else:
        if not parent_code:
            raise InvalidInput("parent_code", f"a {level} needs its {expected_parent}")
        row = conn.execute(sa.select(areas.c.id, areas.c.level).where(areas.c.code == parent_code)).first()
        if row is None:
            raise InvalidInput("parent_code", f"no area with code {parent_code}")
        if row.level != expected_parent:
            raise InvalidInput("parent_code", f"{parent_code} is a {row.level}, a {level} belongs to a "
                               f"{expected_parent}")
        parent_id = row.id
    if conn.execute(sa.select(areas.c.id).where(areas.c.code == code)).first() is not None:
        raise Conflict(f"area code {code} already exists")
    area_id = conn.execute(sa.insert(areas).values(level=level, code=code, name=name_ok, parent_id=parent_id,
                                                   created_at=now).returning(areas.c.id)).scalar_one()
    body = {"id": area_id, "level": level, "code": code, "name": name_ok, "parent_code": parent_code}
    history.record(conn, now, actor, "area", area_id, "created", body)
    return body


def grid_id_of(conn: sa.Connection, grid_code: str, field: str = "grid_code") -> int:
    row = conn.execute(sa.select(areas.c.id, areas.c.level).where(areas.c.code == grid_code)).first()
    if row is None:
        raise InvalidInput(field, f"no area with code {grid_code}")
    if row.level != "grid":
        raise InvalidInput(field, f"{grid_code} is a {row.level}, buildings belong to a grid")
    return int(row.id)


# --------------------------------------------------------------------------- buildings and units


def _building_values(conn: sa.Connection, fields: dict[str, Any]) -> dict[str, Any]:
    """Validated column values for the building fields present in ``fields``."""
    out: dict[str, Any] = {}
    if "name" in fields:
        out["name"] = _text("name", fields["name"], max_len=200)
    if "code" in fields:
        code = fields["code"]
        if code is not None and not CODE.fullmatch(code):
            raise InvalidInput("code", "1-32 letters, digits, '.', '_' or '-'")
        out["code"] = code
    if "address" in fields:
        out["address"] = _text("address", fields["address"], max_len=300, required=False)
    if "grid_code" in fields:
        out["grid_id"] = None if fields["grid_code"] is None else grid_id_of(conn, fields["grid_code"])
    if "landlord_name" in fields:
        out["landlord_name"] = _text("landlord_name", fields["landlord_name"], max_len=100, required=False)
    if "landlord_phone" in fields:
        out["landlord_phone"] = _phone("landlord_phone", fields["landlord_phone"])
    if "landlord_user_id" in fields:
        user_id = fields["landlord_user_id"]
        if user_id is not None:
            role = conn.execute(sa.select(users.c.role).where(users.c.id == user_id)).scalar_one_or_none()
            if role is None:
                raise InvalidInput("landlord_user_id", "no such user")
            if role != "landlord":
                raise InvalidInput("landlord_user_id", f"user {user_id} is a {role}, not a landlord")
        out["landlord_user_id"] = user_id
    if "is_rental" in fields:
        out["is_rental"] = bool(fields["is_rental"])
    if "pledge_signed_at" in fields:
        _aware("pledge_signed_at", fields["pledge_signed_at"])
        out["pledge_signed_at"] = fields["pledge_signed_at"]
    if "rooms" in fields:
        rooms = fields["rooms"]
        if rooms is not None and not 0 <= rooms <= 10_000:
            raise InvalidInput("rooms", "must be between 0 and 10000")
        out["rooms"] = rooms
    unknown = set(fields) - set(BUILDING_FIELDS) - {"grid_code"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "not a building field")
    return out


def _code_free(conn: sa.Connection, code: str | None, building_id: int | None = None) -> None:
    if code is None:
        return
    query = sa.select(buildings.c.id).where(buildings.c.code == code)
    if building_id is not None:
        query = query.where(buildings.c.id != building_id)
    if conn.execute(query).first() is not None:
        raise Conflict(f"building code {code} already exists")


def create_building(conn: sa.Connection, now: datetime, actor: str, *, name: str, code: str | None = None,
                    address: str | None = None, grid_code: str | None = None, landlord_name: str | None = None,
                    landlord_phone: str | None = None, landlord_user_id: int | None = None, is_rental: bool = False,
                    pledge_signed_at: datetime | None = None, rooms: int | None = None) -> JsonObj:
    values = _building_values(conn, {
        "name": name, "code": code, "address": address, "grid_code": grid_code, "landlord_name": landlord_name,
        "landlord_phone": landlord_phone, "landlord_user_id": landlord_user_id, "is_rental": is_rental,
        "pledge_signed_at": pledge_signed_at, "rooms": rooms})
    _code_free(conn, values["code"])
    building_id = conn.execute(sa.insert(buildings).values(created_at=now, updated_at=now, **values)
                               .returning(buildings.c.id)).scalar_one()
    history.record(conn, now, actor, "building", building_id, "created", values)
    return building_json(conn, building_id)


def update_building(conn: sa.Connection, now: datetime, actor: str, building_id: int, **fields: Any) -> JsonObj:
    b = buildings.c
    row = conn.execute(sa.select(*[b[f] for f in BUILDING_FIELDS]).where(b.id == building_id)).mappings().first()
    if row is None:
        raise NotFound("building", building_id)
    values = _building_values(conn, fields)
    _code_free(conn, values.get("code"), building_id)
    changed = history.diff(dict(row), values)
    if changed:
        conn.execute(sa.update(buildings).where(b.id == building_id)
                     .values(updated_at=now, **{k: values[k] for k in changed}))
        history.record(conn, now, actor, "building", building_id, "updated", changed)
    return building_json(conn, building_id)


def building_json(conn: sa.Connection, building_id: int) -> JsonObj:
    b = buildings.c
    row = conn.execute(
        sa.select(b.id, b.name, b.code, b.address, areas.c.code.label("grid_code"), b.landlord_name,
                  b.landlord_phone, b.landlord_user_id, b.is_rental, b.pledge_signed_at, b.rooms)
        .select_from(buildings.outerjoin(areas, areas.c.id == b.grid_id)).where(b.id == building_id)
    ).mappings().first()
    if row is None:
        raise NotFound("building", building_id)
    body = dict(row)
    body["pledge_signed_at"] = _iso(body["pledge_signed_at"])
    body["is_rental"] = bool(body["is_rental"])
    return body


def _unit_values(rules: CityRules, area_m2: float, rooms: int, floor: int | None) -> dict[str, Any]:
    if not 0 < area_m2 <= 100_000:
        raise InvalidInput("area_m2", "must be more than 0 and at most 100000")
    if not 1 <= rooms <= 1_000:
        raise InvalidInput("rooms", "must be between 1 and 1000")
    if floor is not None and not -10 <= floor <= 200:
        raise InvalidInput("floor", "must be between -10 and 200")
    return {"area_m2": float(area_m2), "rooms": rooms, "floor": floor, "capacity": rules.capacity(area_m2, rooms)}


def create_unit(conn: sa.Connection, now: datetime, actor: str, rules: CityRules, *, building_id: int, number: str,
                area_m2: float, rooms: int, floor: int | None = None) -> JsonObj:
    if conn.execute(sa.select(buildings.c.id).where(buildings.c.id == building_id)).first() is None:
        raise InvalidInput("building_id", "no such building")
    number_ok = _text("number", number, max_len=32)
    values = _unit_values(rules, area_m2, rooms, floor)
    taken = conn.execute(sa.select(units.c.id).where(units.c.building_id == building_id,
                                                     units.c.number == number_ok)).first()
    if taken is not None:
        raise Conflict(f"building {building_id} already has unit {number_ok} (unit {taken[0]})")
    unit_id = conn.execute(sa.insert(units).values(building_id=building_id, number=number_ok, created_at=now,
                                                   updated_at=now, **values).returning(units.c.id)).scalar_one()
    history.record(conn, now, actor, "unit", unit_id, "created", {"building_id": building_id, "number": number_ok,
                                                                 **values})
    return {"id": unit_id, "building_id": building_id, "number": number_ok, **values}


def update_unit(conn: sa.Connection, now: datetime, actor: str, rules: CityRules, unit_id: int, *,
                area_m2: float | None = None, rooms: int | None = None, floor: int | None = None) -> JsonObj:
    u = units.c
    row = conn.execute(sa.select(u.building_id, u.number, u.area_m2, u.rooms, u.floor, u.capacity)
                       .where(u.id == unit_id)).mappings().first()
    if row is None:
        raise NotFound("unit", unit_id)
    values = _unit_values(rules, row["area_m2"] if area_m2 is None else area_m2,
                          row["rooms"] if rooms is None else rooms, row["floor"] if floor is None else floor)
    changed = history.diff(dict(row), values)
    if changed:
        conn.execute(sa.update(units).where(u.id == unit_id).values(updated_at=now, **values))
        history.record(conn, now, actor, "unit", unit_id, "updated", changed)
    return {"id": unit_id, "building_id": row["building_id"], "number": row["number"], **values}


def recompute_capacities(conn: sa.Connection, rules: CityRules) -> int:
    """After the city changes its overcrowding rules: every unit's capacity
    again. Returns the number of units whose capacity changed."""
    changed = 0
    for unit_id, area_m2, rooms, capacity in conn.execute(
            sa.select(units.c.id, units.c.area_m2, units.c.rooms, units.c.capacity)).tuples().all():
        new = rules.capacity(area_m2, rooms)
        if new != capacity:
            conn.execute(sa.update(units).where(units.c.id == unit_id).values(capacity=new))
            changed += 1
    return changed


# --------------------------------------------------------------------------- scope


@dataclass(frozen=True)
class Scope:
    """The buildings a caller answers for: ``all`` (an administrator, an
    import, the system and the simulator), ``landlord`` (the buildings whose
    landlord_user_id is theirs), ``coordinator`` (the buildings of the grids
    assigned to them, server/grid/scope.py), ``none`` (anyone else).

    The registry's rules ask it three things: may this caller end that
    registration (a move between their own units), may they name that person
    by id (one who is or was registered in their buildings), and may they
    verify a move into one of their buildings (an administrator or the
    building's grid coordinator, never a landlord). See "Moving house" in
    docs/registry.md."""

    kind: str = "all"
    user_id: int | None = None

    @classmethod
    def of(cls, role: str, user_id: int) -> Scope:
        if role == "admin":
            return EVERYWHERE
        if role in ("landlord", "coordinator"):
            return cls(role, user_id)
        return cls("none", user_id)

    def buildings(self) -> sa.Select[Any] | None:
        """The ids of the scope's buildings, as a sub-select; None: every
        building. The one definition of a scope is server/auth/scopes.py."""
        return scope_buildings("admin" if self.kind == "all" else self.kind, self.user_id)

    def covers(self, conn: sa.Connection, building_id: int) -> bool:
        within = self.buildings()
        if within is None:
            return True
        return conn.execute(sa.select(sa.literal(1)).where(buildings.c.id == building_id,
                                                           buildings.c.id.in_(within))).first() is not None

    def verifies(self, conn: sa.Connection, building_id: int) -> bool:
        """May confirm a move into this building: an administrator, or a
        coordinator of the building's grid. A landlord never does."""
        return self.kind in ("all", "coordinator") and self.covers(conn, building_id)

    def knows_person(self, conn: sa.Connection, person_id: int) -> bool:
        """May the caller name this (existing) person? Everyone, for an
        administrator (and an import, the system); otherwise a person who is
        or was registered (active or ended: accepted at some point, not
        merely declared or claimed) in one of the scope's buildings."""
        within = self.buildings()
        if within is None:
            return True
        r = registrations.c
        query = sa.select(sa.literal(1)).where(r.person_id == person_id, r.status.in_(PERSON_TIES),
                                               r.building_id.in_(within))
        return conn.execute(query.limit(1)).first() is not None


EVERYWHERE = Scope()
# Registrations that tie a person to a building: accepted at some point. A
# pending one (a tenant's declaration, a move awaiting verification) or a
# rejected one does not let that building's landlord read or name the person.
PERSON_TIES = ("active", "ended")
# A landlord's moves awaiting verification, across their buildings: each is
# a coordinator's visit, and each answers one question ("is this number
# registered somewhere else?"), so a landlord cannot pile up hundreds.
MOVES_AWAITING_PER_LANDLORD = 10
MOVE_ACTOR = "system:move"


class NeedsVerification(Conflict):
    """A pending registration that only the building's grid coordinator (or
    an administrator) may confirm: a move from a building outside the
    caller's scope. Says nothing about that building."""

    def __init__(self) -> None:
        super().__init__("this registration awaits verification by the grid coordinator of this building")


# --------------------------------------------------------------------------- persons


@dataclass(frozen=True)
class _PersonInput:
    """A person's fields as given, validated, before anything is written."""

    digest: str
    masked: str
    sex: str
    birth_year: int
    cipher_source: str
    values: dict[str, Any]


def _person_input(now: datetime, vault: PiiVault, fields: PersonFields, field_prefix: str) -> _PersonInput:
    try:
        number = parse_id_number(fields.id_number, today=now.date())
    except InvalidIdNumber as exc:
        raise InvalidInput(field_prefix + "id_number", exc.reason) from None
    values = {
        "display_name": _text(field_prefix + "name", fields.name, max_len=100),
        "phone": _phone(field_prefix + "phone", fields.phone),
        "origin": _text(field_prefix + "origin", fields.origin, max_len=100, required=False),
    }
    return _PersonInput(vault.digest(number.value), number.masked, number.sex, number.birth_date.year, number.value,
                        values)


def _write_person(conn: sa.Connection, now: datetime, actor: str, vault: PiiVault, given: _PersonInput,
                  *, update_existing: bool) -> PersonRef:
    p = persons.c
    row = conn.execute(sa.select(p.id, p.display_name, p.phone, p.origin).where(p.id_digest == given.digest)).first()
    if row is not None:
        before = {"display_name": row.display_name, "phone": row.phone, "origin": row.origin}
        # Fields left empty keep what is recorded.
        new = {k: v for k, v in given.values.items() if v is not None} if update_existing else {}
        changed = history.diff(before, new)
        if changed:
            conn.execute(sa.update(persons).where(p.id == row.id).values(updated_at=now, **new))
            history.record(conn, now, actor, "person", row.id, "updated", changed)
        return PersonRef(row.id, False, given.masked)
    person_id = conn.execute(sa.insert(persons).values(
        created_at=now, updated_at=now, id_digest=given.digest, id_cipher=vault.encrypt(given.cipher_source),
        id_masked=given.masked, sex=given.sex, birth_year=given.birth_year, **given.values,
    ).returning(p.id)).scalar_one()
    history.record(conn, now, actor, "person", person_id, "created",
                   {"id_masked": given.masked, "sex": given.sex, "birth_year": given.birth_year, **given.values})
    return PersonRef(person_id, True, given.masked)


def upsert_person(conn: sa.Connection, now: datetime, actor: str, vault: PiiVault, fields: PersonFields,
                  *, field_prefix: str = "person.", update_existing: bool = True) -> PersonRef:
    """Find the person by identity number or create them. Name, phone and
    origin given for an existing person replace the recorded ones, traced,
    unless ``update_existing`` is false: a public self-declaration must not
    let whoever knows a number rewrite that person's record."""
    given = _person_input(now, vault, fields, field_prefix)
    return _write_person(conn, now, actor, vault, given, update_existing=update_existing)


def find_person(conn: sa.Connection, vault: PiiVault, id_number: str, *, field: str = "id_number") -> int | None:
    try:
        number = parse_id_number(id_number)
    except InvalidIdNumber as exc:
        raise InvalidInput(field, exc.reason) from None
    found: int | None = conn.execute(sa.select(persons.c.id).where(persons.c.id_digest == vault.digest(number.value))
                                     ).scalar_one_or_none()
    return found


# --------------------------------------------------------------------------- registrations


def _unit(conn: sa.Connection, unit_id: int, field: str = "unit_id") -> tuple[int, str]:
    row = conn.execute(sa.select(units.c.building_id, units.c.number).where(units.c.id == unit_id)).first()
    if row is None:
        raise InvalidInput(field, "no such unit")
    return int(row.building_id), str(row.number)


def _credential_value(fmt: str, value: str, field: str = "credential") -> str:
    if fmt not in CREDENTIAL_FORMATS:
        raise InvalidInput(field + ".format", f"must be one of {', '.join(CREDENTIAL_FORMATS)}")
    value = value.strip()
    if fmt == "em4100":
        value = value.upper()
        if not EM4100.fullmatch(value):
            raise InvalidInput(field + ".value", "an EM4100 card number is 10 hexadecimal digits")
    if not 1 <= len(value) <= 128:
        raise InvalidInput(field + ".value", "must be 1-128 characters")
    return value


def _overlaps(conn: sa.Connection, person_id: int, start: datetime, *, exclude: int | None = None) -> list[sa.Row[Any]]:
    """The person's active registration, and ended ones whose stay reaches
    past ``start``: two places at once. The active one first."""
    r = registrations.c
    query = (sa.select(r.id, r.unit_id, r.building_id, r.valid_from, r.ended_at, r.status)
             .where(r.person_id == person_id,
                    sa.or_(r.status == "active",
                           sa.and_(r.status == "ended", r.ended_at > start, r.valid_from < r.ended_at)))
             .order_by(r.status, r.id))
    if exclude is not None:
        query = query.where(r.id != exclude)
    return list(conn.execute(query).all())


def _outside(conn: sa.Connection, scope: Scope, rows: list[sa.Row[Any]]) -> bool:
    return any(not scope.covers(conn, int(row.building_id)) for row in rows)


class _Previous(NamedTuple):
    """The registration a move ends: its id, building, and whether it lies
    in the caller's scope."""

    id: int
    building_id: int
    inside: bool


def _previous_to_end(conn: sa.Connection, person_id: int, unit_id: int, arrived_at: datetime, *,
                     end_previous: bool, scope: Scope = EVERYWHERE,
                     exclude: int | None = None) -> _Previous | None:
    """Refuse two places at once. With ``end_previous``, the person's active
    registration elsewhere is to end at ``arrived_at`` (a move): its id, and
    whether it lies in ``scope``. Nothing is written here.

    A registration's details (its unit, id and dates) are named only when it
    lies in ``scope``: a coordinator confirming a move from another grid
    learns that the stays conflict, not where the other one was."""
    found = _overlaps(conn, person_id, arrived_at, exclude=exclude)
    for other in found:
        if other.status == "active" and other.unit_id == unit_id:
            raise Conflict("this person is already registered at this unit"
                           + (f" (registration {other.id})" if scope.covers(conn, other.building_id) else ""))
    active = None
    for other in found:
        if other.status == "active":
            active = other
            continue
        if scope.covers(conn, int(other.building_id)):
            raise Conflict(f"person {person_id} was registered at unit {other.unit_id} until "
                           f"{other.ended_at.isoformat()} (registration {other.id}); the new arrival overlaps it")
        raise Conflict("the person's registration elsewhere ended after this arrival; check the arrival date")
    if active is None:
        return None
    inside = scope.covers(conn, int(active.building_id))
    if not end_previous:
        if inside:
            raise Conflict(f"person {person_id} is registered at unit {active.unit_id} since "
                           f"{active.valid_from.isoformat()} (registration {active.id}); end it first or pass "
                           f"end_previous")
        raise Conflict("the person is registered elsewhere; end it first or pass end_previous")
    if arrived_at <= active.valid_from:
        if inside:
            raise InvalidInput("arrived_at", f"is before the arrival of registration {active.id} it would end")
        raise InvalidInput("arrived_at", "is before the person's arrival at their current registration")
    return _Previous(int(active.id), int(active.building_id), inside)


def _end_for_move(conn: sa.Connection, now: datetime, actor: str, person_id: int, previous: _Previous | None,
                  arrived_at: datetime, new_id: int, new_building_id: int) -> list[Change]:
    """End the old registration with reason ``moved`` at the new arrival.
    Ended from outside its landlord's view (a verified move from another
    building), its trace names no one: the old landlord reads it, and a
    coordinator's user id would say which grid the tenant went to. Who did
    it, and where to, is on the person's trace, which only staff read."""
    if previous is None:
        return []
    # The old landlord's notice says "registered at another address" for a
    # move to another building, never which.
    trace = {"registered_elsewhere": True} if previous.building_id != new_building_id else None
    ended = deregister(conn, now, actor if previous.inside else MOVE_ACTOR, previous.id, departed_at=arrived_at,
                       reason="moved", trace=trace)
    history.record(conn, now, actor, "person", person_id, "moved",
                   {"from_registration": previous.id, "to_registration": new_id, "departed_at": arrived_at})
    return ended.changes


def _moves_awaiting(conn: sa.Connection, scope: Scope) -> int:
    within = scope.buildings()
    r = registrations.c
    query = sa.select(sa.func.count()).select_from(registrations).where(r.status == "pending", r.source != "tenant")
    if within is not None:
        query = query.where(r.building_id.in_(within))
    return int(conn.execute(query).scalar_one())


def _card_in_use(conn: sa.Connection, *, building_id: int, unit_id: int, fmt: str, value: str,
                 person_id: int | None, for_registration: bool) -> int | None:
    """The id of a card the unit's landlord handed out that this
    registration takes over, None for a new card; Conflict when the card is
    someone else's."""
    c = credentials.c
    taken = conn.execute(sa.select(c.id, c.registration_id, c.person_id, c.unit_id)
                         .where(c.building_id == building_id, c.format == fmt, c.value == value,
                                c.revoked_at.is_(None))).first()
    if taken is None:
        return None
    adoptable = (for_registration and taken.registration_id is None and taken.unit_id == unit_id
                 and taken.person_id in (None, person_id))
    if not adoptable:
        raise Conflict(f"{fmt} credential {value} is already active in building {building_id} "
                       f"(credential {taken.id}); revoke it first")
    return int(taken.id)


def register(conn: sa.Connection, now: datetime, actor: str, vault: PiiVault, *, unit_id: int,
             person: PersonFields | int, arrived_at: datetime, source: str, status: str = "active",
             end_previous: bool = False, credential: tuple[str, str] | None = None,
             doors: list[str] | None = None, confirmed_by: int | None = None, scope: Scope = EVERYWHERE) -> Outcome:
    """Register a person at a unit (a landlord, a coordinator, an import) or,
    with status "pending", record a tenant's self-declaration. With a
    credential, the card is issued (or, if the landlord had already handed it
    to the unit, linked to this registration) in the same step.

    ``scope`` is the caller's (``Scope.of``): a person named by id must be
    one the scope knows; ``end_previous`` ends a registration only inside
    it. A person registered (or with a stay overlapping this arrival)
    outside it is moving house: the registration is created pending, the
    person's record untouched and the card held back, until the grid
    coordinator of this building confirms it (``confirm_registration``).
    The answer is that of any pending registration, and no error on the
    way names the other building."""
    if source not in REGISTRATION_SOURCES or source == "access":
        raise InvalidInput("source", "must be landlord, tenant, coordinator or import")
    if status not in ("active", "pending"):
        raise InvalidInput("status", "must be active or pending")
    declaration = status == "pending"
    _aware("arrived_at", arrived_at)
    _not_future("arrived_at", arrived_at, now)
    building_id, _ = _unit(conn, unit_id)
    card: tuple[str, str] | None = None
    if credential is not None:
        if declaration:
            raise InvalidInput("credential", "a self-declaration cannot carry a credential; issue it on confirmation")
        card = (credential[0], _credential_value(credential[0], credential[1]))
    given: _PersonInput | None = None
    if isinstance(person, PersonFields):
        given = _person_input(now, vault, person, "person.")
        found = conn.execute(sa.select(persons.c.id).where(persons.c.id_digest == given.digest)).scalar()
        person_id: int | None = int(found) if found is not None else None
        masked = given.masked
    else:
        p = conn.execute(sa.select(persons.c.id, persons.c.id_masked).where(persons.c.id == person)).first()
        # One answer for an id that names nobody and one the caller may not
        # name: ids are sequential, and the caller must not learn whom.
        if p is None or not scope.knows_person(conn, int(p.id)):
            raise InvalidInput("person_id", "no such person")
        person_id, masked = int(p.id), str(p.id_masked)
    moving_in = False
    if not declaration and person_id is not None:
        others = _overlaps(conn, person_id, arrived_at)
        if any(o.status == "active" and o.unit_id == unit_id for o in others):
            raise Conflict("this person is already registered at this unit")
        moving_in = _outside(conn, scope, others)
    if declaration or moving_in:
        # Waiting for someone else's word: the person's record stays as it is.
        if person_id is None:
            assert given is not None
            person_id = _write_person(conn, now, actor, vault, given, update_existing=False).id
        r = registrations.c
        dup = conn.execute(sa.select(r.id).where(r.person_id == person_id, r.unit_id == unit_id,
                                                 r.status.in_(("pending", "active")))).first()
        if dup is not None:
            raise Conflict("this person already has a registration or declaration at this unit")
    if moving_in:
        assert person_id is not None
        if scope.kind == "landlord" and _moves_awaiting(conn, scope) >= MOVES_AWAITING_PER_LANDLORD:
            raise Conflict(f"{MOVES_AWAITING_PER_LANDLORD} registrations already await the grid coordinator's "
                           "verification; ask them to verify those first")
        if card is not None:
            _card_in_use(conn, building_id=building_id, unit_id=unit_id, fmt=card[0], value=card[1],
                         person_id=person_id, for_registration=True)
        return _register_pending_move(conn, now, actor, person_id=person_id, masked=masked, unit_id=unit_id,
                                      building_id=building_id, arrived_at=arrived_at, source=source,
                                      declared=_declared(given), card=card, doors=doors or [])
    previous = None
    if not declaration:
        if given is not None:
            person_id = _write_person(conn, now, actor, vault, given, update_existing=True).id
        assert person_id is not None
        previous = _previous_to_end(conn, person_id, unit_id, arrived_at, end_previous=end_previous, scope=scope)
    assert person_id is not None
    reg_id = conn.execute(sa.insert(registrations).values(
        person_id=person_id, building_id=building_id, unit_id=unit_id, valid_from=arrived_at, status=status,
        source=source, created_at=now, updated_at=now,
        confirmed_at=None if declaration else now, confirmed_by=None if declaration else confirmed_by,
    ).returning(registrations.c.id)).scalar_one()
    trace: JsonObj = {"person_id": person_id, "person": masked, "unit_id": unit_id, "arrived_at": arrived_at,
                      "source": source, "status": status}
    if declaration:
        trace["declared"] = _declared(given)
    history.record(conn, now, actor, "registration", reg_id, "declared" if declaration else "registered", trace)
    changes = _end_for_move(conn, now, actor, person_id, previous, arrived_at, reg_id, building_id)
    body = _registration_answer(reg_id, person_id, masked, unit_id, building_id, arrived_at, status, source)
    if card is not None:
        issued = _issue(conn, now, actor, building_id=building_id, unit_id=unit_id, fmt=card[0],
                        value=card[1], person_id=person_id, registration_id=reg_id, doors=doors or [],
                        valid_from=arrived_at)
        body["credential_id"] = issued.body["id"]
        changes += issued.changes
    body["allowlist_versions"] = {c.gateway_id: c.version for c in changes}
    return Outcome(body, changes)


def _registration_answer(reg_id: int, person_id: int, masked: str, unit_id: int, building_id: int,
                         arrived_at: datetime, status: str, source: str, *, awaiting: str | None = None) -> JsonObj:
    return {"id": reg_id, "person_id": person_id, "person_masked": masked, "unit_id": unit_id,
            "building_id": building_id, "arrived_at": arrived_at.isoformat(), "status": status, "source": source,
            "awaiting": awaiting, "credential_id": None, "allowlist_versions": {}}


def _declared(given: _PersonInput | None) -> JsonObj | None:
    """The person's fields as the declarant or the registering landlord
    typed them: what pages show for a pending registration, instead of the
    person's record (which may be another landlord's tenant's)."""
    if given is None:
        return None
    v = given.values
    return {"name": v["display_name"], "phone": v["phone"], "origin": v["origin"]}


def _register_pending_move(conn: sa.Connection, now: datetime, actor: str, *, person_id: int, masked: str,
                           unit_id: int, building_id: int, arrived_at: datetime, source: str,
                           declared: JsonObj | None, card: tuple[str, str] | None, doors: list[str]) -> Outcome:
    reg_id = conn.execute(sa.insert(registrations).values(
        person_id=person_id, building_id=building_id, unit_id=unit_id, valid_from=arrived_at, status="pending",
        source=source, created_at=now, updated_at=now).returning(registrations.c.id)).scalar_one()
    trace: JsonObj = {"person_id": person_id, "person": masked, "unit_id": unit_id, "arrived_at": arrived_at,
                      "source": source, "status": "pending", "awaiting": "verification", "declared": declared}
    if card is not None:
        # Held here until the move is confirmed: no card of a pending
        # registration is on any allowlist.
        trace["card"] = {"format": card[0], "value": card[1], "doors": doors}
    history.record(conn, now, actor, "registration", reg_id, "declared", trace)
    return Outcome(_registration_answer(reg_id, person_id, masked, unit_id, building_id, arrived_at, "pending",
                                        source, awaiting="verification"))


def declare(conn: sa.Connection, now: datetime, actor: str, vault: PiiVault, *, unit_id: int, person: PersonFields,
            arrived_at: datetime) -> Outcome:
    """A tenant's self-declaration: pending until the landlord or a
    coordinator confirms it."""
    return register(conn, now, actor, vault, unit_id=unit_id, person=person, arrived_at=arrived_at, source="tenant",
                    status="pending")


def _registration(conn: sa.Connection, registration_id: int) -> sa.Row[Any]:
    r = registrations.c
    row = conn.execute(sa.select(r.id, r.person_id, r.unit_id, r.building_id, r.valid_from, r.ended_at, r.status,
                                 r.source)
                       .where(r.id == registration_id)).first()
    if row is None:
        raise NotFound("registration", registration_id)
    return row


def is_move(source: str) -> bool:
    """A pending registration that is not a tenant's own declaration was
    made pending by the move rule: it awaits the grid coordinator."""
    return source != "tenant"


def _held_card(conn: sa.Connection, registration_id: int) -> JsonObj | None:
    h = history_rows.c
    changes = conn.execute(sa.select(h.changes).where(h.entity == "registration", h.entity_id == registration_id,
                                                      h.action == "declared").order_by(h.id).limit(1)).scalar()
    card = (changes or {}).get("card")
    return card if isinstance(card, dict) else None


def confirm_registration(conn: sa.Connection, now: datetime, actor: str, registration_id: int, *,
                         user_id: int | None = None, end_previous: bool = False,
                         scope: Scope = EVERYWHERE) -> Outcome:
    """A pending registration becomes active.

    A tenant's self-declaration is confirmed by the landlord, a coordinator
    or an administrator, as long as the person's other stay (if any) is in
    the confirmer's scope (then ``end_previous`` ends it). A move from
    outside that scope, and every registration the move rule made pending,
    is confirmed only by the building's grid coordinator or an
    administrator (``NeedsVerification`` otherwise); confirming such a move
    ends the old registration (reason ``moved``, its cards revoked) and
    issues the card held with the registration."""
    reg = _registration(conn, registration_id)
    if reg.status != "pending":
        raise Conflict(f"registration {registration_id} is {reg.status}, only a pending registration is confirmed")
    move = is_move(reg.source)
    verifier = scope.verifies(conn, reg.building_id)
    if move and not verifier:
        raise NeedsVerification()
    others = _overlaps(conn, reg.person_id, reg.valid_from, exclude=registration_id)
    if not verifier and _outside(conn, scope, others):
        raise NeedsVerification()
    previous = _previous_to_end(conn, reg.person_id, reg.unit_id, reg.valid_from, end_previous=end_previous or move,
                                scope=scope, exclude=registration_id)
    conn.execute(sa.update(registrations).where(registrations.c.id == registration_id)
                 .values(status="active", confirmed_at=now, confirmed_by=user_id, updated_at=now))
    history.record(conn, now, actor, "registration", registration_id, "confirmed", {"status": ["pending", "active"]})
    changes = _end_for_move(conn, now, actor, reg.person_id, previous, reg.valid_from, registration_id,
                            reg.building_id)
    body: JsonObj = {"id": registration_id, "status": "active", "confirmed_at": now.isoformat(),
                     "credential_id": None}
    card = _held_card(conn, registration_id) if move else None
    if card is not None:
        issued = _issue(conn, now, actor, building_id=reg.building_id, unit_id=reg.unit_id, fmt=str(card["format"]),
                        value=str(card["value"]), person_id=reg.person_id, registration_id=registration_id,
                        doors=list(card.get("doors") or []), valid_from=reg.valid_from)
        body["credential_id"] = issued.body["id"]
        changes += issued.changes
    body["allowlist_versions"] = {c.gateway_id: c.version for c in changes}
    return Outcome(body, changes)


def reject_registration(conn: sa.Connection, now: datetime, actor: str, registration_id: int, *,
                        reason: str) -> Outcome:
    """A pending registration is refused: a declaration nobody recognises,
    or a move the coordinator did not verify (or the landlord withdrew)."""
    reg = _registration(conn, registration_id)
    if reg.status != "pending":
        raise Conflict(f"registration {registration_id} is {reg.status}, only a pending registration is rejected")
    reason_ok = _text("reason", reason, max_len=32)
    conn.execute(sa.update(registrations).where(registrations.c.id == registration_id)
                 .values(status="rejected", end_reason=reason_ok, ended_at=now, updated_at=now))
    history.record(conn, now, actor, "registration", registration_id, "rejected",
                   {"status": ["pending", "rejected"], "reason": reason_ok})
    return Outcome({"id": registration_id, "status": "rejected", "reason": reason_ok})


def deregister(conn: sa.Connection, now: datetime, actor: str, registration_id: int, *,
               departed_at: datetime | None = None, reason: str = "deregistered",
               trace: JsonObj | None = None) -> Outcome:
    """End a registration at the departure and revoke every credential issued
    under it, at once (the card stops opening doors now, whatever the
    departure date recorded). ``trace``: more fields for the history row."""
    reg = _registration(conn, registration_id)
    if reg.status != "active":
        raise Conflict(f"registration {registration_id} is {reg.status}; only an active registration is ended"
                       + (" (reject a pending declaration instead)" if reg.status == "pending" else ""))
    departed_at = departed_at or now
    _aware("departed_at", departed_at)
    _not_future("departed_at", departed_at, now)
    if departed_at < reg.valid_from:
        raise InvalidInput("departed_at", f"is before the arrival ({reg.valid_from.isoformat()})")
    reason_ok = _text("reason", reason, max_len=32)
    conn.execute(sa.update(registrations).where(registrations.c.id == registration_id)
                 .values(status="ended", ended_at=departed_at, end_reason=reason_ok, updated_at=now))
    c = credentials.c
    revoked = conn.execute(
        sa.update(credentials).where(c.registration_id == registration_id, c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason="registration_ended").returning(c.id, c.format, c.value)
    ).tuples().all()
    history.record(conn, now, actor, "registration", registration_id, "ended",
                   {"status": ["active", "ended"], "departed_at": departed_at, "reason": reason_ok,
                    "revoked_credentials": [cred_id for cred_id, _, _ in revoked], **(trace or {})})
    # Each card's own trace says it stopped too, not only the registration's.
    for cred_id, _, _ in revoked:
        history.record(conn, now, actor, "credential", cred_id, "revoked",
                       {"reason": "registration_ended", "registration_id": registration_id})
    changes: list[Change] = []
    if revoked:
        removals = [allowlists.credential_json(fmt, value) for _, fmt, value in revoked]
        changes = allowlists.bump(conn, allowlists.gateways_of(conn, reg.building_id), now, removals=removals)
    return Outcome({"id": registration_id, "status": "ended", "departed_at": departed_at.isoformat(),
                    "reason": reason_ok, "revoked_credentials": len(revoked),
                    "allowlist_versions": {ch.gateway_id: ch.version for ch in changes}}, changes)


# --------------------------------------------------------------------------- credentials


def _issue(conn: sa.Connection, now: datetime, actor: str, *, building_id: int, unit_id: int, fmt: str, value: str,
           person_id: int | None, registration_id: int | None, doors: list[str],
           valid_from: datetime | None) -> Outcome:
    value = _credential_value(fmt, value)
    c = credentials.c
    taken = _card_in_use(conn, building_id=building_id, unit_id=unit_id, fmt=fmt, value=value, person_id=person_id,
                         for_registration=registration_id is not None)
    if taken is not None:
        # The landlord handed this card to the unit before registering its
        # holder: link it, so evidence from now on names the person.
        conn.execute(sa.update(credentials).where(c.id == taken)
                     .values(person_id=person_id, registration_id=registration_id))
        cred_id = taken
        action = "linked"
    else:
        cred_id = conn.execute(sa.insert(credentials).values(
            person_id=person_id, registration_id=registration_id, building_id=building_id, unit_id=unit_id,
            format=fmt, value=value, doors=doors, issued_at=now).returning(c.id)).scalar_one()
        action = "issued"
    history.record(conn, now, actor, "credential", cred_id, action,
                   {"format": fmt, "value": value, "unit_id": unit_id, "person_id": person_id,
                    "registration_id": registration_id})
    entry = allowlists.entry_json(fmt, value, allowlists.holder_ref(person_id, cred_id), doors, valid_from, None)
    changes = allowlists.bump(conn, allowlists.gateways_of(conn, building_id), now, upserts=[entry])
    return Outcome({"id": cred_id, "format": fmt, "value": value, "unit_id": unit_id, "person_id": person_id,
                    "registration_id": registration_id, "issued_at": now.isoformat(), "action": action,
                    "allowlist_versions": {ch.gateway_id: ch.version for ch in changes}}, changes)


def issue_unit_credential(conn: sa.Connection, now: datetime, actor: str, *, unit_id: int, fmt: str, value: str,
                          person_id: int | None = None, doors: list[str] | None = None) -> Outcome:
    """A card the landlord hands out for a unit without a registration: it
    opens the doors, and its use is the evidence that asks for one."""
    building_id, _ = _unit(conn, unit_id)
    if person_id is not None and conn.execute(sa.select(persons.c.id).where(persons.c.id == person_id)).first() is None:
        raise InvalidInput("person_id", "no such person")
    return _issue(conn, now, actor, building_id=building_id, unit_id=unit_id, fmt=fmt, value=value,
                  person_id=person_id, registration_id=None, doors=doors or [], valid_from=None)


def issue_registration_credential(conn: sa.Connection, now: datetime, actor: str, registration_id: int, *,
                                  fmt: str, value: str, doors: list[str] | None = None) -> Outcome:
    """Another card for a registered tenant (a second card, a replacement):
    tied to the registration, so ending it revokes this card too."""
    reg = _registration(conn, registration_id)
    if reg.status != "active" or reg.unit_id is None:
        raise Conflict(f"registration {registration_id} is {reg.status}; cards go with an active registration")
    return _issue(conn, now, actor, building_id=reg.building_id, unit_id=reg.unit_id, fmt=fmt, value=value,
                  person_id=reg.person_id, registration_id=registration_id, doors=doors or [],
                  valid_from=reg.valid_from)


def revoke_credential(conn: sa.Connection, now: datetime, actor: str, credential_id: int, *,
                      reason: str = "revoked") -> Outcome:
    c = credentials.c
    row = conn.execute(sa.select(c.building_id, c.format, c.value, c.revoked_at).where(c.id == credential_id)).first()
    if row is None:
        raise NotFound("credential", credential_id)
    if row.revoked_at is not None:
        raise Conflict(f"credential {credential_id} already revoked at {row.revoked_at.isoformat()}")
    reason_ok = _text("reason", reason, max_len=32)
    conn.execute(sa.update(credentials).where(c.id == credential_id).values(revoked_at=now, revoked_reason=reason_ok))
    history.record(conn, now, actor, "credential", credential_id, "revoked", {"reason": reason_ok})
    changes = allowlists.bump(conn, allowlists.gateways_of(conn, row.building_id), now,
                              removals=[allowlists.credential_json(row.format, row.value)])
    return Outcome({"id": credential_id, "revoked_at": now.isoformat(), "reason": reason_ok,
                    "allowlist_versions": {ch.gateway_id: ch.version for ch in changes}}, changes)
