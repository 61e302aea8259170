"""What a coordinator sees of a unit after scanning its plate, read in one
connection: the unit and building, registered occupants and pending
self-declarations, evidence lately (presence and the last door events of
the unit's cards), open cases and tasks, the last patrols and when the next
one is due.

Pure query, no aiohttp, so the benchmark can profile it. Every query here is
a primary-key or index look-up with a LIMIT: the page must answer in a few
milliseconds at 100,000 units whatever a unit's history holds.
  units, buildings, areas          primary keys
  registrations (+ persons)        ix_registrations_unit_id_status
  presence (+ persons)             uq_presence_unit_id_subject
  credentials                      ix_credentials_unit_id
  events                           ix_events_credential_value_occurred_at, one
                                   bounded index scan per card (JOIN LATERAL on
                                   PostgreSQL, UNION ALL on SQLite), over the
                                   last DOOR_EVENT_DAYS only: on PostgreSQL the
                                   partitions of those days
  cases                            ix_cases_unit_id_state
  tasks                            tasks' unit index (see docs/patrols.md)
  patrols (+ users)                ix_patrols_unit_id_at
Identity numbers are selected only as persons.id_masked.

On PostgreSQL (psycopg) all reads go out at once in pipeline mode: one
network round trip for the page instead of one per read. Run it on an
autocommit connection (server/db/read_pool.read_only) so the
statements stay prepared: a rollback makes psycopg forget them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.db.models import (
    OPEN_CASE_STATES,
    areas,
    buildings,
    cases,
    credentials,
    events,
    patrols,
    persons,
    presence,
    registrations,
    tasks,
    units,
    users,
)
from server.grid.schedule import next_patrol_due
from server.rules import CityRules

Row = dict[str, Any]
MAX_OCCUPANTS = 100
MAX_SIGHTINGS = 20
MAX_CARDS = 10
EVENTS_PER_CARD = 5
MAX_EVENTS = 10
MAX_CASES = 20
MAX_TASKS = 20
LAST_PATROLS = 5
# Cards revoked this recently still tell what happened at the door lately.
RECENT_CARD_DAYS = 30
# The door events shown are those of the last DOOR_EVENT_DAYS days, longer
# than the longest patrol interval (21 days). The bound on occurred_at is
# what lets PostgreSQL read only the newest of the events table's daily
# partitions instead of probing an index in every one of them (about 190
# with the default retention): at plan time for a custom plan, at executor
# start ("Subplans Removed") for a prepared generic plan.
DOOR_EVENT_DAYS = 30


@dataclass(frozen=True)
class UnitView:
    unit: Row
    occupants: list[Row]
    pending: list[Row]
    sightings: list[Row]
    door_events: list[Row]
    cases: list[Row]
    tasks: list[Row]
    patrols: list[Row]
    next_patrol_due: datetime
    patrol_overdue: bool


# The statements are built once: constructing a select costs more Python
# than running it, and one SQL text per statement lets psycopg prepare it.
_u, _b, _a, _r, _p = units.c, buildings.c, areas.c, registrations.c, persons.c
_UNIT = (sa.select(_u.id, _u.building_id, _u.number, _u.floor, _u.area_m2, _u.rooms, _u.capacity, _u.grade,
                   _u.grade_at, _u.last_patrol_at, _u.created_at, _b.name.label("building_name"), _b.address,
                   _b.grid_id, _b.landlord_name, _b.landlord_phone, _b.landlord_user_id, _b.pledge_signed_at,
                   _a.name.label("grid_name"))
         .join(buildings, _b.id == _u.building_id).join(areas, _a.id == _b.grid_id, isouter=True)
         .where(_u.id == sa.bindparam("unit_id")))
_REGISTRATIONS = (sa.select(_r.id, _r.person_id, _r.status, _r.valid_from, _r.source, _r.created_at,
                            _p.display_name.label("name"), _p.id_masked)
                  .join(persons, _p.id == _r.person_id)
                  .where(_r.unit_id == sa.bindparam("unit_id"), sa.or_(_r.status == "active", _r.status == "pending"))
                  .order_by(_r.valid_from, _r.id).limit(MAX_OCCUPANTS))
_s = presence.c
_SIGHTINGS = (sa.select(_s.subject, _s.person_id, _s.credential_id, _s.first_seen_at, _s.last_seen_at, _s.days_seen,
                        _s.events, _p.display_name.label("name"))
              .join(persons, _p.id == _s.person_id, isouter=True)
              .where(_s.unit_id == sa.bindparam("unit_id")).order_by(_s.last_seen_at.desc()).limit(MAX_SIGHTINGS))
_c = credentials.c
_CARDS = (sa.select(_c.id, _c.format, _c.value, _c.person_id, _c.revoked_at)
          .where(_c.unit_id == sa.bindparam("unit_id"),
                 sa.or_(_c.revoked_at.is_(None), _c.revoked_at > sa.bindparam("revoked_since")))
          .order_by(_c.id.desc()).limit(MAX_CARDS))
_k = cases.c
_CASES = (sa.select(_k.id, _k.kind, _k.state, _k.person_id, _k.registration_id, _k.evidence_at, _k.opened_at,
                    _k.due_at, _k.evidence, _p.display_name.label("name"))
          .join(persons, _p.id == _k.person_id, isouter=True)
          .where(_k.unit_id == sa.bindparam("unit_id"), sa.or_(*(_k.state == s for s in OPEN_CASE_STATES)))
          .order_by(_k.opened_at, _k.id)
          .limit(MAX_CASES))
_t = tasks.c
_TASKS = (sa.select(_t.id, _t.kind, _t.state, _t.source, _t.summary, _t.case_id, _t.created_at, _t.due_at)
          .where(_t.unit_id == sa.bindparam("unit_id"), _t.state != "archived").order_by(_t.id.desc())
          .limit(MAX_TASKS))
_v, _us = patrols.c, users.c
_PATROLS = (sa.select(_v.id, _v.at, _v.user_id, _v.occupants_observed, _v.seen_person_ids, _v.checklist, _v.notes,
                      _v.attachment_ids, _us.display_name.label("by"))
            .join(users, _us.id == _v.user_id).where(_v.unit_id == sa.bindparam("unit_id"))
            .order_by(_v.at.desc(), _v.id.desc()).limit(LAST_PATROLS))


def _events_of_cards(n: int) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """The newest EVENTS_PER_CARD events of each of n cards since
    ``events_since``: one index range scan per card, joined by UNION ALL
    (each branch a subquery, so SQLite takes its ORDER BY and LIMIT)."""
    e = events.c
    branches = [sa.select(sa.select(e.id, e.gateway_id, e.occurred_at, e.kind, e.door, e.device,
                                    e.credential_format, e.credential_value, e.data)
                          .where(e.credential_value == sa.bindparam(f"v{i}"), e.credential_format == sa.bindparam(f"f{i}"),
                                 e.occurred_at >= sa.bindparam("events_since"))
                          .order_by(e.occurred_at.desc()).limit(EVENTS_PER_CARD).subquery(f"card{i}"))
                for i in range(n)]
    return branches[0] if n == 1 else sa.union_all(*branches)


_EVENTS = {n: _events_of_cards(n) for n in range(1, MAX_CARDS + 1)}


def _rows(conn: sa.Connection, statement: sa.Executable, **params: Any) -> list[Row]:
    return [dict(row) for row in conn.execute(statement, params).mappings()]


def unit_row(conn: sa.Connection, unit_id: int) -> Row | None:
    found = _rows(conn, _UNIT, unit_id=unit_id)
    return found[0] if found else None


def registrations_of(conn: sa.Connection, unit_id: int) -> list[Row]:
    """The unit's active and pending registrations with the person's name
    and masked ID number."""
    return _rows(conn, _REGISTRATIONS, unit_id=unit_id)


def _door_events(conn: sa.Connection, cards: list[Row], events_since: datetime) -> list[Row]:
    """The newest events of each card since ``events_since``, wherever it
    was read (a card of this unit read at another building is evidence too)."""
    if not cards:
        return []
    params: dict[str, Any] = {"events_since": events_since}
    for i, card in enumerate(cards):
        params[f"v{i}"], params[f"f{i}"] = card["value"], card["format"]
    rows = _rows(conn, _EVENTS[len(cards)], **params)
    rows.sort(key=lambda row: (row["occurred_at"], row["id"]), reverse=True)
    return rows[:MAX_EVENTS]


# Reads that need only the unit id (and the cut-offs for recent cards and events).
_SECTIONS: dict[str, sa.Select[Any]] = {"unit": _UNIT, "registrations": _REGISTRATIONS, "sightings": _SIGHTINGS,
                                       "cases": _CASES, "tasks": _TASKS, "patrols": _PATROLS}


def _events_lateral() -> sa.Select[Any]:
    """PostgreSQL: the unit's cards and each card's newest events since
    ``events_since`` in one statement (LATERAL), so the page's reads need
    no second round. The bound is on the partition key, so only the
    partitions of those days are read; without it every card probed the
    index of every daily partition."""
    c, e = credentials.c, events.c
    cards = (sa.select(c.value, c.format)
             .where(c.unit_id == sa.bindparam("unit_id"),
                    sa.or_(c.revoked_at.is_(None), c.revoked_at > sa.bindparam("revoked_since")))
             .order_by(c.id.desc()).limit(MAX_CARDS).subquery("cards"))
    latest = (sa.select(e.id, e.gateway_id, e.occurred_at, e.kind, e.door, e.device, e.credential_format,
                        e.credential_value, e.data)
              .where(e.credential_value == cards.c.value, e.credential_format == cards.c.format,
                     e.occurred_at >= sa.bindparam("events_since"))
              .order_by(e.occurred_at.desc()).limit(EVENTS_PER_CARD).lateral("latest"))
    return (sa.select(latest).select_from(cards).join(latest, sa.true())
            .order_by(latest.c.occurred_at.desc(), latest.c.id.desc()).limit(MAX_EVENTS))


_PG_SECTIONS: dict[str, sa.Select[Any]] = {**_SECTIONS, "events": _events_lateral()}
# SQL text and default parameters of _PG_SECTIONS, compiled once.
_pg_compiled: dict[str, tuple[str, dict[str, Any]]] = {}


def _pg_statements(dialect: sa.Dialect) -> dict[str, tuple[str, dict[str, Any]]]:
    if not _pg_compiled:
        for name, statement in _PG_SECTIONS.items():
            # Plain binds only (no IN lists, which SQLAlchemy expands at run time).
            compiled = statement.compile(dialect=dialect)
            # The constants (LIMITs, IN lists) with placeholders for what each read passes.
            defaults = compiled.construct_params({"unit_id": 0, "revoked_since": None, "events_since": None})
            _pg_compiled[name] = (str(compiled), dict(defaults))
    return _pg_compiled


def pg_reads(dialect: sa.Dialect, unit_id: int, now: datetime) -> list[tuple[str, str, dict[str, Any]]]:
    """The page's reads on PostgreSQL as (section, SQL, parameters): what
    :func:`load_unit_view` sends in one pipeline (bench/patrol_profile.py
    times them one by one)."""
    params = _params(unit_id, now)
    return [(name, sql, {**defaults, **{k: v for k, v in params.items() if k in defaults}})
            for name, (sql, defaults) in _pg_statements(dialect).items()]


def _params(unit_id: int, now: datetime) -> dict[str, Any]:
    return {"unit_id": unit_id, "revoked_since": now - timedelta(days=RECENT_CARD_DAYS),
            "events_since": now - timedelta(days=DOOR_EVENT_DAYS)}


def _read_pipelined(conn: sa.Connection, unit_id: int, now: datetime) -> dict[str, list[Row]]:
    """PostgreSQL: every read sent at once in psycopg's pipeline mode, so the
    page costs one network round trip instead of one per read. The rows are
    what SQLAlchemy would return: psycopg loads timestamptz as aware
    datetimes and jsonb as Python values, and these columns need no other
    conversion."""
    from psycopg.rows import dict_row

    driver = conn.connection.driver_connection
    pending = []
    with driver.pipeline():  # type: ignore[union-attr]
        for name, sql, params in pg_reads(conn.dialect, unit_id, now):
            cursor = driver.cursor(row_factory=dict_row)  # type: ignore[union-attr]
            cursor.execute(sql, params)
            pending.append((name, cursor))
    return {name: [dict(row) for row in cursor.fetchall()] for name, cursor in pending}


def _read(conn: sa.Connection, unit_id: int, now: datetime) -> dict[str, list[Row]]:
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        return _read_pipelined(conn, unit_id, now)
    params = _params(unit_id, now)
    # SQLite: statements cost no round trip, one at a time is as fast.
    found = {name: _rows(conn, statement, **params) for name, statement in _SECTIONS.items()}
    found["events"] = _door_events(conn, _rows(conn, _CARDS, **params), params["events_since"])
    return found


def load_unit_view(conn: sa.Connection, unit_id: int, now: datetime, rules: CityRules) -> UnitView | None:
    found = _read(conn, unit_id, now)
    if not found["unit"]:
        return None
    unit, regs = found["unit"][0], found["registrations"]
    occupants = [r for r in regs if r["status"] == "active"]
    registered = {r["person_id"] for r in occupants}
    for row in found["sightings"]:
        row["registered"] = row["person_id"] in registered
    # One schedule for the page and the overdue list (an ungraded unit as 一般).
    due = next_patrol_due(rules, unit["grade"], unit["last_patrol_at"], unit["created_at"])
    return UnitView(
        unit=unit, occupants=occupants, pending=[r for r in regs if r["status"] == "pending"],
        sightings=found["sightings"], door_events=found["events"], cases=found["cases"], tasks=found["tasks"],
        patrols=found["patrols"], next_patrol_due=due, patrol_overdue=due < now)
