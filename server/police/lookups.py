"""The registry queries behind the police checks: one person by the keyed
digest of their identity number, many persons at once (batch), the
occupants of an address, and one person's door events. Each returns only
what the caller's parts allow; the handlers (server/police/checks.py) turn
them into answers and audit entries.

"Registered" means an active registration. "Evidenced" means a door read
one of the person's cards within the evidence window (the city's
``silence_days``: a person unseen that long is presumed gone), kept by
reconciliation in ``presence``. A number the registry does not know, or a
person neither registered nor evidenced, is "unknown": like the national
identity check, the answer never says more than was asked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.db.models import buildings, cases, credentials, events, gateways, persons, presence, registrations, units

REGISTERED = "registered"
EVIDENCED = "evidenced_unregistered"
UNKNOWN = "unknown"
RESULTS = (REGISTERED, EVIDENCED, UNKNOWN)
EVENTS_MAX = 1000


@dataclass(frozen=True)
class Place:
    building_id: int
    building_code: str | None
    address: str | None
    unit: str | None
    in_jurisdiction: bool

    def as_json(self) -> dict[str, Any]:
        """Outside the caller's jurisdiction, only that it is outside."""
        if not self.in_jurisdiction:
            return {"in_jurisdiction": False}
        return {"in_jurisdiction": True, "building_code": self.building_code, "address": self.address,
                "unit": self.unit}


@dataclass
class PersonFacts:
    person_id: int | None
    result: str
    id_masked: str | None = None
    registered_since: datetime | None = None
    registered_at: Place | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    last_seen_at: datetime | None = None
    last_seen_place: Place | None = None
    open_cases: list[dict[str, Any]] = field(default_factory=list)


def _in_scope(building_id: int | None, scope: sa.Select[tuple[int]] | None, conn: sa.Connection,
              cache: dict[int, bool]) -> bool:
    if building_id is None:
        return False
    if scope is None:
        return True
    if building_id not in cache:
        found = conn.execute(sa.select(sa.literal(1)).select_from(buildings)
                             .where(buildings.c.id == building_id, buildings.c.id.in_(scope)).limit(1)).first()
        cache[building_id] = found is not None
    return cache[building_id]


def place_of(conn: sa.Connection, building_id: int, unit_id: int | None, scope: sa.Select[tuple[int]] | None,
           cache: dict[int, bool]) -> Place:
    row = conn.execute(sa.select(buildings.c.code, buildings.c.address, buildings.c.name)
                       .where(buildings.c.id == building_id)).first()
    unit = None
    if unit_id is not None:
        unit = conn.execute(sa.select(units.c.number).where(units.c.id == unit_id)).scalar()
    return Place(building_id, row.code if row else None, (row.address or row.name) if row else None, unit,
                 _in_scope(building_id, scope, conn, cache))


def person_facts(conn: sa.Connection, digest: str, *, parts: frozenset[str], evidence_since: datetime,
                 scope: sa.Select[tuple[int]] | None) -> PersonFacts:
    """Everything the parts allow about the person with this digest.
    ``scope``: the caller's jurisdiction's buildings (None: all)."""
    row = conn.execute(sa.select(persons.c.id, persons.c.id_masked).where(persons.c.id_digest == digest)).first()
    if row is None:
        return PersonFacts(None, UNKNOWN)
    person_id = int(row.id)
    facts = PersonFacts(person_id, UNKNOWN, id_masked=row.id_masked)
    cache: dict[int, bool] = {}
    r = registrations.c
    active = conn.execute(sa.select(r.valid_from, r.building_id, r.unit_id)
                          .where(r.person_id == person_id, r.status == "active")
                          .order_by(r.valid_from.desc()).limit(1)).first()
    p = presence.c
    seen = conn.execute(sa.select(p.last_seen_at, p.building_id, p.unit_id).where(p.person_id == person_id)
                        .order_by(p.last_seen_at.desc()).limit(1)).first()
    if active is not None:
        facts.result = REGISTERED
        facts.registered_since = active.valid_from
        facts.registered_at = place_of(conn, int(active.building_id), active.unit_id, scope, cache)
    elif seen is not None and seen.last_seen_at >= evidence_since:
        facts.result = EVIDENCED
    if "last_seen" in parts and seen is not None:
        facts.last_seen_at = seen.last_seen_at
        facts.last_seen_place = place_of(conn, int(seen.building_id), seen.unit_id, scope, cache)
    if "history" in parts:
        for reg in conn.execute(sa.select(r.valid_from, r.ended_at, r.end_reason, r.status, r.building_id, r.unit_id)
                                .where(r.person_id == person_id, r.status.in_(("active", "ended")))
                                .order_by(r.valid_from.desc()).limit(100)):
            place = place_of(conn, int(reg.building_id), reg.unit_id, scope, cache)
            facts.history.append({"status": reg.status, "from": reg.valid_from, "until": reg.ended_at,
                                  "end_reason": reg.end_reason, "place": place.as_json()})
    if "cases" in parts:
        c = cases.c
        for case in conn.execute(sa.select(c.kind, c.state, c.opened_at, c.building_id, c.unit_id)
                                 .where(c.person_id == person_id, c.state.in_(("open", "acknowledged")))
                                 .order_by(c.opened_at.desc()).limit(50)):
            where = (place_of(conn, int(case.building_id), case.unit_id, scope, cache).as_json()
                     if case.building_id is not None else None)
            facts.open_cases.append({"kind": case.kind, "state": case.state, "opened_at": case.opened_at,
                                     "place": where})
    return facts


def batch_results(conn: sa.Connection, digests: Sequence[str], *, evidence_since: datetime) -> dict[str, str]:
    """The result of each digest found (missing ones are unknown), in one
    round trip for the whole chunk."""
    if not digests:
        return {}
    p, r, pr = persons.c, registrations.c, presence.c
    registered = sa.exists().where(r.person_id == p.id, r.status == "active")
    evidenced = sa.exists().where(pr.person_id == p.id, pr.last_seen_at >= evidence_since)
    found: dict[str, str] = {}
    query = sa.select(p.id_digest, registered, evidenced).where(p.id_digest.in_(sa.bindparam("d", expanding=True)))
    for digest, is_registered, is_evidenced in conn.execute(query, {"d": list(digests)}):
        found[digest] = REGISTERED if is_registered else EVIDENCED if is_evidenced else UNKNOWN
    return found


@dataclass(frozen=True)
class Occupant:
    person_id: int | None
    name: str | None
    id_masked: str | None
    id_cipher: str | None
    id_digest: str | None
    since: datetime | None = None
    last_seen_at: datetime | None = None
    days_seen: int | None = None


@dataclass
class UnitOccupants:
    unit_id: int
    number: str
    capacity: int
    registered: list[Occupant] = field(default_factory=list)
    evidenced: list[Occupant] = field(default_factory=list)
    # Cards read here that name nobody (handed out without a registration).
    unknown_cards: int = 0


ADDRESS_UNITS_MAX = 500


def address_occupants(conn: sa.Connection, building_id: int, unit_id: int | None, *,
                      evidence_since: datetime) -> list[UnitOccupants]:
    u, r, p, pr = units.c, registrations.c, persons.c, presence.c
    unit_filter = [u.building_id == building_id] + ([u.id == unit_id] if unit_id is not None else [])
    found = {int(row.id): UnitOccupants(int(row.id), row.number, int(row.capacity))
             for row in conn.execute(sa.select(u.id, u.number, u.capacity).where(*unit_filter)
                                     .order_by(u.number).limit(ADDRESS_UNITS_MAX))}
    if not found:
        return []
    ids = list(found)
    for row in conn.execute(sa.select(r.unit_id, r.valid_from, p.id, p.display_name, p.id_masked, p.id_cipher,
                                      p.id_digest)
                            .join(persons, p.id == r.person_id)
                            .where(r.unit_id.in_(ids), r.status == "active").order_by(r.valid_from)):
        found[int(row.unit_id)].registered.append(Occupant(int(row.id), row.display_name, row.id_masked,
                                                           row.id_cipher, row.id_digest, since=row.valid_from))
    for row in conn.execute(sa.select(pr.unit_id, pr.person_id, pr.last_seen_at, pr.days_seen, p.display_name,
                                      p.id_masked, p.id_cipher, p.id_digest)
                            .select_from(presence.outerjoin(persons, p.id == pr.person_id))
                            .where(pr.unit_id.in_(ids), pr.last_seen_at >= evidence_since)
                            .order_by(pr.last_seen_at.desc())):
        unit = found[int(row.unit_id)]
        if row.person_id is None:
            unit.unknown_cards += 1
            continue
        unit.evidenced.append(Occupant(int(row.person_id), row.display_name, row.id_masked, row.id_cipher,
                                       row.id_digest, last_seen_at=row.last_seen_at, days_seen=int(row.days_seen)))
    return list(found.values())


def person_events(conn: sa.Connection, person_id: int, start: datetime, end: datetime,
                  scope: sa.Select[tuple[int]] | None) -> tuple[list[dict[str, Any]], bool]:
    """The door events of the person's cards in [start, end), newest first,
    at most EVENTS_MAX (and whether there were more). Only doors in the
    caller's jurisdiction: whereabouts elsewhere are another force's to ask."""
    c, e, g = credentials.c, events.c, gateways.c
    cards = conn.execute(sa.select(c.format, c.value, c.building_id).where(c.person_id == person_id)).all()
    rows: list[Any] = []
    cache: dict[int, bool] = {}
    for card in {(x.format, x.value, int(x.building_id)) for x in cards}:
        fmt, value, building_id = card
        rows.extend(conn.execute(
            sa.select(e.occurred_at, e.kind, e.door, e.data, g.building_id)
            .join(gateways, g.id == e.gateway_id)
            .where(e.credential_value == value, e.credential_format == fmt, g.building_id == building_id,
                   e.occurred_at >= start, e.occurred_at < end,
                   *([g.building_id.in_(scope)] if scope is not None else []))
            .order_by(e.occurred_at.desc()).limit(EVENTS_MAX + 1)))
    rows.sort(key=lambda x: x.occurred_at, reverse=True)
    more = len(rows) > EVENTS_MAX
    out = []
    places: dict[int, dict[str, Any]] = {}
    for row in rows[:EVENTS_MAX]:
        building_id = int(row.building_id)
        if building_id not in places:
            places[building_id] = place_of(conn, building_id, None, scope, cache).as_json()
        data = row.data or {}
        out.append({"at": row.occurred_at, "kind": row.kind, "door": row.door,
                    "decision": data.get("decision"), "place": places[building_id]})
    return out, more
