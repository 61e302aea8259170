"""Buildings, persons, registrations and credentials: the rules, as functions
on a connection inside the caller's transaction. Each change that alters a
gateway's allowlist bumps its version in the same transaction and returns
the ``Change`` to publish after commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.access import allowlists
from server.access.allowlists import Change
from server.db.models import buildings, credentials, gateways, persons, registrations
from server.web.errors import Conflict, InvalidInput, NotFound

JsonObj = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    body: JsonObj
    changes: list[Change] = field(default_factory=list)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def create_building(conn: sa.Connection, now: datetime, name: str) -> Outcome:
    building_id = conn.execute(sa.insert(buildings).values(name=name, created_at=now)
                               .returning(buildings.c.id)).scalar_one()
    return Outcome({"id": building_id, "name": name})


def create_person(conn: sa.Connection, now: datetime, display_name: str) -> Outcome:
    person_id = conn.execute(sa.insert(persons).values(display_name=display_name, created_at=now)
                             .returning(persons.c.id)).scalar_one()
    return Outcome({"id": person_id, "display_name": display_name, "ref": allowlists.person_ref(person_id)})


def _require(conn: sa.Connection, table: sa.Table, ident: int, what: str, field_name: str | None = None) -> None:
    if conn.execute(sa.select(table.c.id).where(table.c.id == ident)).first() is None:
        if field_name is not None:
            raise InvalidInput(field_name, f"no {what} {ident}")
        raise NotFound(what, ident)


def assign_gateway(conn: sa.Connection, now: datetime, gateway_id: str, building_id: int | None) -> Outcome:
    """Point a gateway at a building (None: at none, its list empties). A
    gateway that has not reported yet gets its row now."""
    if building_id is not None:
        _require(conn, buildings, building_id, "building", "building_id")
    updated = conn.execute(sa.update(gateways).where(gateways.c.id == gateway_id)
                           .values(building_id=building_id)).rowcount
    if not updated:
        conn.execute(sa.insert(gateways).values(id=gateway_id, first_seen=now, last_seen=now, max_seq=0,
                                                building_id=building_id))
    changes = allowlists.bump(conn, [gateway_id], now, snapshot_only=True)
    return Outcome({"gateway": gateway_id, "building_id": building_id,
                    "allowlist_version": changes[0].version}, changes)


def create_registration(conn: sa.Connection, now: datetime, person_id: int, building_id: int,
                        valid_from: datetime | None, valid_until: datetime | None) -> Outcome:
    _require(conn, persons, person_id, "person", "person_id")
    _require(conn, buildings, building_id, "building", "building_id")
    valid_from = valid_from or now
    if valid_until is not None and valid_until <= valid_from:
        raise InvalidInput("valid_until", "must be after valid_from")
    reg_id = conn.execute(sa.insert(registrations).values(
        person_id=person_id, building_id=building_id, valid_from=valid_from, valid_until=valid_until,
        created_at=now).returning(registrations.c.id)).scalar_one()
    return Outcome({"id": reg_id, "person_id": person_id, "building_id": building_id,
                    "valid_from": _iso(valid_from), "valid_until": _iso(valid_until), "ended_at": None})


def end_registration(conn: sa.Connection, now: datetime, registration_id: int) -> Outcome:
    """End it now and revoke every credential issued under it."""
    r = registrations.c
    row = conn.execute(sa.select(r.building_id, r.ended_at).where(r.id == registration_id)).first()
    if row is None:
        raise NotFound("registration", registration_id)
    building_id, ended_at = row
    if ended_at is not None:
        raise Conflict(f"registration {registration_id} already ended at {ended_at.isoformat()}")
    conn.execute(sa.update(registrations).where(r.id == registration_id)
                 .values(ended_at=now, status="ended", end_reason="deregistered", updated_at=now))
    c = credentials.c
    revoked = conn.execute(
        sa.update(credentials).where(c.registration_id == registration_id, c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason="registration_ended").returning(c.format, c.value)
    ).tuples().all()
    changes: list[Change] = []
    if revoked:
        removals = [allowlists.credential_json(fmt, value) for fmt, value in revoked]
        changes = allowlists.bump(conn, allowlists.gateways_of(conn, building_id), now, removals=removals)
    return Outcome({"id": registration_id, "ended_at": now.isoformat(), "revoked_credentials": len(revoked),
                    "allowlist_versions": _versions(changes)}, changes)


def _versions(changes: list[Change]) -> dict[str, int]:
    return {change.gateway_id: change.version for change in changes}


def issue_credential(conn: sa.Connection, now: datetime, registration_id: int, fmt: str, value: str,
                     doors: list[str]) -> Outcome:
    r = registrations.c
    reg = conn.execute(sa.select(r.person_id, r.building_id, r.valid_from, r.valid_until, r.ended_at)
                       .where(r.id == registration_id)).first()
    if reg is None:
        raise InvalidInput("registration_id", f"no registration {registration_id}")
    person_id, building_id, valid_from, valid_until, ended_at = reg
    if ended_at is not None:
        raise InvalidInput("registration_id", f"registration {registration_id} ended at {ended_at.isoformat()}")
    if valid_until is not None and now >= valid_until:
        raise InvalidInput("registration_id", f"registration {registration_id} expired at {valid_until.isoformat()}")
    if now < valid_from:
        raise InvalidInput("registration_id",
                           f"registration {registration_id} is not valid before {valid_from.isoformat()}")
    c = credentials.c
    taken = conn.execute(sa.select(c.id).where(c.building_id == building_id, c.format == fmt, c.value == value,
                                               c.revoked_at.is_(None))).first()
    if taken is not None:
        raise Conflict(f"{fmt} credential {value} is already active in building {building_id} "
                       f"(credential {taken[0]}); revoke it first")
    cred_id = conn.execute(sa.insert(credentials).values(
        person_id=person_id, registration_id=registration_id, building_id=building_id, format=fmt, value=value,
        doors=doors, issued_at=now).returning(c.id)).scalar_one()
    entry = allowlists.entry_json(fmt, value, allowlists.person_ref(person_id), doors, valid_from, valid_until)
    changes = allowlists.bump(conn, allowlists.gateways_of(conn, building_id), now, upserts=[entry])
    return Outcome({"id": cred_id, "registration_id": registration_id, "person_id": person_id,
                    "building_id": building_id, "format": fmt, "value": value, "doors": doors,
                    "issued_at": now.isoformat(), "valid_from": _iso(valid_from), "valid_until": _iso(valid_until),
                    "allowlist_versions": _versions(changes)}, changes)


def revoke_credential(conn: sa.Connection, now: datetime, credential_id: int) -> Outcome:
    c = credentials.c
    row = conn.execute(sa.select(c.building_id, c.format, c.value, c.revoked_at).where(c.id == credential_id)).first()
    if row is None:
        raise NotFound("credential", credential_id)
    building_id, fmt, value, revoked_at = row
    if revoked_at is not None:
        raise Conflict(f"credential {credential_id} already revoked at {revoked_at.isoformat()}")
    conn.execute(sa.update(credentials).where(c.id == credential_id)
                 .values(revoked_at=now, revoked_reason="revoked"))
    changes = allowlists.bump(conn, allowlists.gateways_of(conn, building_id), now,
                              removals=[allowlists.credential_json(fmt, value)])
    return Outcome({"id": credential_id, "revoked_at": now.isoformat(), "allowlist_versions": _versions(changes)},
                   changes)
