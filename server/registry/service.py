"""The registry's rules, as functions on a connection inside the caller's
transaction: areas, buildings, units, persons, residence registrations and
the credentials that go with them. Every change leaves a row in ``history``;
every change to what a gateway lets in returns the allowlist ``Change`` to
publish after commit (``Outcome.changes``), like server/access/registry.py.

Errors name the request field at fault (``InvalidInput``), the missing thing
(``NotFound``) or the state that forbids the change (``Conflict``). Identity
numbers never appear in errors, history or return values except masked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, get_args

import sqlalchemy as sa

from rentgate import wire
from server.access import allowlists
from server.access.allowlists import Change
from server.access.registry import Outcome
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
from server.registry import history
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
    return value


def _phone(field: str, value: str | None) -> str | None:
    value = _text(field, value, max_len=20, required=False)
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
                raise InvalidInput("landlord_user_id", f"no user {user_id}")
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
        raise InvalidInput("building_id", f"no building {building_id}")
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


# --------------------------------------------------------------------------- persons


def upsert_person(conn: sa.Connection, now: datetime, actor: str, vault: PiiVault, fields: PersonFields,
                  *, field_prefix: str = "person.", update_existing: bool = True) -> PersonRef:
    """Find the person by identity number or create them. Name, phone and
    origin given for an existing person replace the recorded ones, traced,
    unless ``update_existing`` is false: a public self-declaration must not
    let whoever knows a number rewrite that person's record."""
    try:
        number = parse_id_number(fields.id_number, today=now.date())
    except InvalidIdNumber as exc:
        raise InvalidInput(field_prefix + "id_number", exc.reason) from None
    values = {
        "display_name": _text(field_prefix + "name", fields.name, max_len=100),
        "phone": _phone(field_prefix + "phone", fields.phone),
        "origin": _text(field_prefix + "origin", fields.origin, max_len=100, required=False),
    }
    digest = vault.digest(number.value)
    p = persons.c
    row = conn.execute(sa.select(p.id, p.display_name, p.phone, p.origin).where(p.id_digest == digest)).first()
    if row is not None:
        before = {"display_name": row.display_name, "phone": row.phone, "origin": row.origin}
        # Fields left empty keep what is recorded.
        given = {k: v for k, v in values.items() if v is not None} if update_existing else {}
        changed = history.diff(before, given)
        if changed:
            conn.execute(sa.update(persons).where(p.id == row.id).values(updated_at=now, **given))
            history.record(conn, now, actor, "person", row.id, "updated", changed)
        return PersonRef(row.id, False, number.masked)
    person_id = conn.execute(sa.insert(persons).values(
        created_at=now, updated_at=now, id_digest=digest, id_cipher=vault.encrypt(number.value),
        id_masked=number.masked, sex=number.sex, birth_year=number.birth_date.year, **values,
    ).returning(p.id)).scalar_one()
    history.record(conn, now, actor, "person", person_id, "created",
                   {"id_masked": number.masked, "sex": number.sex, "birth_year": number.birth_date.year, **values})
    return PersonRef(person_id, True, number.masked)


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
        raise InvalidInput(field, f"no unit {unit_id}")
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


def _overlapping(conn: sa.Connection, person_id: int, start: datetime, *, exclude: int | None = None) -> sa.Row[Any] | None:
    """The person's active registration, or an ended one whose stay reaches
    past ``start``: two places at once."""
    r = registrations.c
    query = (sa.select(r.id, r.unit_id, r.building_id, r.valid_from, r.ended_at, r.status)
             .where(r.person_id == person_id,
                    sa.or_(r.status == "active",
                           sa.and_(r.status == "ended", r.ended_at > start, r.valid_from < r.ended_at)))
             .order_by(r.status, r.id))
    if exclude is not None:
        query = query.where(r.id != exclude)
    return conn.execute(query).first()


def _check_overlap(conn: sa.Connection, now: datetime, actor: str, person_id: int, unit_id: int, arrived_at: datetime,
                   *, end_previous: bool, exclude: int | None = None) -> list[Change]:
    """Refuse two places at once; with ``end_previous`` end the person's active
    registration elsewhere at ``arrived_at`` (a move). Returns its changes."""
    other = _overlapping(conn, person_id, arrived_at, exclude=exclude)
    if other is None:
        return []
    if other.status == "active" and other.unit_id == unit_id:
        raise Conflict(f"person {person_id} is already registered at this unit (registration {other.id})")
    if other.status == "ended":
        raise Conflict(f"person {person_id} was registered at unit {other.unit_id} until "
                       f"{other.ended_at.isoformat()} (registration {other.id}); the new arrival overlaps it")
    if not end_previous:
        raise Conflict(f"person {person_id} is registered at unit {other.unit_id} since "
                       f"{other.valid_from.isoformat()} (registration {other.id}); end it first or pass end_previous")
    if arrived_at <= other.valid_from:
        raise InvalidInput("arrived_at", f"is before the arrival of registration {other.id} it would end")
    return deregister(conn, now, actor, other.id, departed_at=arrived_at, reason="moved").changes


def register(conn: sa.Connection, now: datetime, actor: str, vault: PiiVault, *, unit_id: int,
             person: PersonFields | int, arrived_at: datetime, source: str, status: str = "active",
             end_previous: bool = False, credential: tuple[str, str] | None = None,
             doors: list[str] | None = None, confirmed_by: int | None = None) -> Outcome:
    """Register a person at a unit (a landlord, a coordinator, an import) or,
    with status "pending", record a tenant's self-declaration. With a
    credential, the card is issued (or, if the landlord had already handed it
    to the unit, linked to this registration) in the same step."""
    if source not in REGISTRATION_SOURCES or source == "access":
        raise InvalidInput("source", "must be landlord, tenant, coordinator or import")
    if status not in ("active", "pending"):
        raise InvalidInput("status", "must be active or pending")
    _aware("arrived_at", arrived_at)
    _not_future("arrived_at", arrived_at, now)
    building_id, _ = _unit(conn, unit_id)
    if isinstance(person, PersonFields):
        ref = upsert_person(conn, now, actor, vault, person, update_existing=status == "active")
        person_id, masked = ref.id, ref.masked
    else:
        p = conn.execute(sa.select(persons.c.id, persons.c.id_masked).where(persons.c.id == person)).first()
        if p is None:
            raise InvalidInput("person_id", f"no person {person}")
        person_id, masked = int(p.id), p.id_masked
    changes: list[Change] = []
    if status == "active":
        changes += _check_overlap(conn, now, actor, person_id, unit_id, arrived_at, end_previous=end_previous)
    else:
        if credential is not None:
            raise InvalidInput("credential", "a self-declaration cannot carry a credential; issue it on confirmation")
        r = registrations.c
        dup = conn.execute(sa.select(r.id).where(r.person_id == person_id, r.unit_id == unit_id,
                                                 r.status.in_(("pending", "active")))).first()
        if dup is not None:
            raise Conflict(f"person {person_id} already has registration {dup.id} at this unit")
    reg_id = conn.execute(sa.insert(registrations).values(
        person_id=person_id, building_id=building_id, unit_id=unit_id, valid_from=arrived_at, status=status,
        source=source, created_at=now, updated_at=now,
        confirmed_at=now if status == "active" else None, confirmed_by=confirmed_by,
    ).returning(registrations.c.id)).scalar_one()
    history.record(conn, now, actor, "registration", reg_id, "declared" if status == "pending" else "registered",
                   {"person_id": person_id, "person": masked, "unit_id": unit_id, "arrived_at": arrived_at,
                    "source": source, "status": status})
    body: JsonObj = {"id": reg_id, "person_id": person_id, "person_masked": masked, "unit_id": unit_id,
                     "building_id": building_id, "arrived_at": arrived_at.isoformat(), "status": status,
                     "source": source, "credential_id": None}
    if credential is not None:
        issued = _issue(conn, now, actor, building_id=building_id, unit_id=unit_id, fmt=credential[0],
                        value=credential[1], person_id=person_id, registration_id=reg_id, doors=doors or [],
                        valid_from=arrived_at)
        body["credential_id"] = issued.body["id"]
        changes += issued.changes
    body["allowlist_versions"] = {c.gateway_id: c.version for c in changes}
    return Outcome(body, changes)


def declare(conn: sa.Connection, now: datetime, actor: str, vault: PiiVault, *, unit_id: int, person: PersonFields,
            arrived_at: datetime) -> Outcome:
    """A tenant's self-declaration: pending until the landlord or a
    coordinator confirms it."""
    return register(conn, now, actor, vault, unit_id=unit_id, person=person, arrived_at=arrived_at, source="tenant",
                    status="pending")


def _registration(conn: sa.Connection, registration_id: int) -> sa.Row[Any]:
    r = registrations.c
    row = conn.execute(sa.select(r.id, r.person_id, r.unit_id, r.building_id, r.valid_from, r.ended_at, r.status)
                       .where(r.id == registration_id)).first()
    if row is None:
        raise NotFound("registration", registration_id)
    return row


def confirm_registration(conn: sa.Connection, now: datetime, actor: str, registration_id: int, *,
                         user_id: int | None = None, end_previous: bool = False) -> Outcome:
    reg = _registration(conn, registration_id)
    if reg.status != "pending":
        raise Conflict(f"registration {registration_id} is {reg.status}, only a pending declaration is confirmed")
    changes = _check_overlap(conn, now, actor, reg.person_id, reg.unit_id, reg.valid_from,
                             end_previous=end_previous, exclude=registration_id)
    conn.execute(sa.update(registrations).where(registrations.c.id == registration_id)
                 .values(status="active", confirmed_at=now, confirmed_by=user_id, updated_at=now))
    history.record(conn, now, actor, "registration", registration_id, "confirmed", {"status": ["pending", "active"]})
    return Outcome({"id": registration_id, "status": "active", "confirmed_at": now.isoformat()}, changes)


def reject_registration(conn: sa.Connection, now: datetime, actor: str, registration_id: int, *,
                        reason: str) -> Outcome:
    reg = _registration(conn, registration_id)
    if reg.status != "pending":
        raise Conflict(f"registration {registration_id} is {reg.status}, only a pending declaration is rejected")
    reason_ok = _text("reason", reason, max_len=32)
    conn.execute(sa.update(registrations).where(registrations.c.id == registration_id)
                 .values(status="rejected", end_reason=reason_ok, ended_at=now, updated_at=now))
    history.record(conn, now, actor, "registration", registration_id, "rejected",
                   {"status": ["pending", "rejected"], "reason": reason_ok})
    return Outcome({"id": registration_id, "status": "rejected", "reason": reason_ok})


def deregister(conn: sa.Connection, now: datetime, actor: str, registration_id: int, *,
               departed_at: datetime | None = None, reason: str = "deregistered") -> Outcome:
    """End a registration at the departure and revoke every credential issued
    under it, at once (the card stops opening doors now, whatever the
    departure date recorded)."""
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
                    "revoked_credentials": [cred_id for cred_id, _, _ in revoked]})
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
    taken = conn.execute(sa.select(c.id, c.registration_id, c.person_id, c.unit_id)
                         .where(c.building_id == building_id, c.format == fmt, c.value == value,
                                c.revoked_at.is_(None))).first()
    if taken is not None:
        adoptable = (registration_id is not None and taken.registration_id is None and taken.unit_id == unit_id
                     and taken.person_id in (None, person_id))
        if not adoptable:
            raise Conflict(f"{fmt} credential {value} is already active in building {building_id} "
                           f"(credential {taken.id}); revoke it first")
        # The landlord handed this card to the unit before registering its
        # holder: link it, so evidence from now on names the person.
        conn.execute(sa.update(credentials).where(c.id == taken.id)
                     .values(person_id=person_id, registration_id=registration_id))
        cred_id = int(taken.id)
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
        raise InvalidInput("person_id", f"no person {person_id}")
    return _issue(conn, now, actor, building_id=building_id, unit_id=unit_id, fmt=fmt, value=value,
                  person_id=person_id, registration_id=None, doors=doors or [], valid_from=None)


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
