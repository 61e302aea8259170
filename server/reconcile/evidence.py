"""Incremental reconciliation: stored card reads become presence evidence.

Each call reads the events after the watermark (reconcile_state "events"),
finds for each read the credential valid at that moment in the gateway's
building, and folds the reads into ``presence`` (per unit and subject) or
``unknown_credentials``. The watermark moves in the same transaction as the
presence rows, so a crash never counts an event twice or skips one.

Credentials are looked up by one joined query per chunk, against the
database as it is at that moment: there is no cache, hence no staleness.

The watermark is a (txid, id) mark that stays correct with several ingest
processes committing at once (server/reconcile/marks.py). Out-of-order events
(a gateway's outbox replayed days later) count their day only if it is newer
than the subject's last day, so ``days_seen`` can undercount for them;
first/last seen stay exact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from server.db.models import credentials, presence, unknown_credentials
from server.db.types import UtcDateTime
from server.reconcile import cases as case_ops
from server.reconcile import marks
from server.reconcile.sqlbits import ACTOR, is_postgres
from server.rules import CityRules

log = logging.getLogger(__name__)

WATERMARK = "events"

# The chunk's events first (LIMIT on events, not on joined rows, so an
# event always comes with all its candidate credentials), then their
# credentials, newest issue first.
_READS = """
WITH e AS (SELECT id, txid, occurred_at, gateway_id, credential_format, credential_value FROM events e
           WHERE {range} AND e.kind = 'card_read' AND e.credential_value IS NOT NULL
           ORDER BY {order} LIMIT :limit)
SELECT e.id, e.txid, e.occurred_at, e.credential_format, e.credential_value, g.building_id,
       c.id AS credential_id, COALESCE(c.unit_id, r.unit_id) AS unit_id,
       COALESCE(c.person_id, r.person_id) AS person_id, c.issued_at
FROM e
LEFT JOIN gateways g ON g.id = e.gateway_id
LEFT JOIN credentials c ON c.building_id = g.building_id AND c.format = e.credential_format
     AND c.value = e.credential_value AND c.issued_at <= e.occurred_at
     AND (c.revoked_at IS NULL OR c.revoked_at > e.occurred_at)
LEFT JOIN registrations r ON r.id = c.registration_id
ORDER BY {order}, c.issued_at DESC
"""


# PostgreSQL: the same, with each read's credential found by LATERAL index
# probes. The fold plans its statements once per connection (generic plans,
# marks.generic_plans), and a generic plan cannot know how few reads the
# LIMIT keeps: the plain joins then hashed every credential and registration
# (a second per call); LATERAL keeps the probes whatever the estimate (the
# LIMITs keep PostgreSQL from flattening it back into joins; the newest
# valid credential is the one apply_chunk takes anyway).
_READS_PG = """
WITH e AS MATERIALIZED (
           SELECT id, txid, occurred_at, gateway_id, credential_format, credential_value FROM events e
           WHERE {range} AND e.kind = 'card_read' AND e.credential_value IS NOT NULL
           ORDER BY {order} LIMIT :limit)
SELECT e.id, e.txid, e.occurred_at, e.credential_format, e.credential_value, g.building_id,
       c.id AS credential_id, c.unit_id, c.person_id, c.issued_at
FROM e
LEFT JOIN LATERAL (SELECT g.building_id FROM gateways g WHERE g.id = e.gateway_id LIMIT 1) g ON true
LEFT JOIN LATERAL (
     SELECT c.id, COALESCE(c.unit_id, r.unit_id) AS unit_id, COALESCE(c.person_id, r.person_id) AS person_id,
            c.issued_at
     FROM credentials c LEFT JOIN registrations r ON r.id = c.registration_id
     WHERE c.building_id = g.building_id AND c.format = e.credential_format AND c.value = e.credential_value
       AND c.issued_at <= e.occurred_at AND (c.revoked_at IS NULL OR c.revoked_at > e.occurred_at)
     ORDER BY c.issued_at DESC LIMIT 1) c ON true
ORDER BY {order}
"""


def _reads(conn: sa.Connection) -> sa.TextualSelect:
    template = _READS_PG if is_postgres(conn) else _READS
    sql = template.format(range=marks.keyset_range(conn, "e"), order=marks.keyset_order(conn, "e"))
    return sa.text(sql).columns(occurred_at=UtcDateTime(), issued_at=UtcDateTime())


@dataclass
class CatchUpStats:
    events: int = 0
    attributed: int = 0
    unknown: int = 0
    no_building: int = 0
    no_unit: int = 0
    cases_opened: int = 0
    cases_closed: int = 0
    # The event id of the mark after this chunk (the mark: marks.Mark).
    watermark: int = 0
    # The mark reached the newest event that can be read now.
    done: bool = True
    # Done, but committed events wait after the mark behind a transaction
    # still open (PostgreSQL: marks.py, the horizon): look again soon.
    waiting: bool = False
    # Units whose grade may have changed: those of a presumed departure
    # closed by a sighting, and every unit of a building where an unknown
    # credential case opened (its points count for the whole building).
    regrade_units: set[int] = field(default_factory=set)
    regrade_buildings: set[int] = field(default_factory=set)


@dataclass
class _Seen:
    first: datetime
    last: datetime
    days: set[int]
    events: int
    building_id: int
    person_id: int | None
    credential_id: int | None

    def add(self, at: datetime, day: int) -> None:
        self.first = min(self.first, at)
        self.last = max(self.last, at)
        self.days.add(day)
        self.events += 1


def aware(value: Any) -> datetime:
    # Raw text() columns come back naive (UTC) from SQLite, aware from PostgreSQL.
    at: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at if at.tzinfo is not None else at.replace(tzinfo=ZoneInfo("UTC"))


_aware = aware


def local_day(at: datetime, zone: ZoneInfo) -> int:
    """Days since 0001-01-01 of the local calendar date: one number per day."""
    return at.astimezone(zone).date().toordinal()


def read_watermark(conn: sa.Connection, *, lock: bool, name: str = WATERMARK) -> marks.Mark:
    """How far the fold called ``name`` has read (card reads: "events"; the
    camera fold keeps its own, server/reconcile/camera.py)."""
    return marks.read_mark(conn, name, lock=lock)


def apply_chunk(conn: sa.Connection, now: datetime, rules: CityRules, *, limit: int) -> CatchUpStats:
    """One chunk of at most ``limit`` card reads, in the caller's write
    transaction (which must serialise with other reconcilers: BEGIN
    IMMEDIATE on SQLite; here the watermark row is locked on PostgreSQL)."""
    stats = CatchUpStats()
    zone = rules.zone
    marks.generic_plans(conn)
    after = read_watermark(conn, lock=True)
    upto = marks.newest(conn)
    stats.watermark = after.id
    if upto is None or upto <= after:
        stats.waiting = is_postgres(conn) and marks.lag(conn, after, cap=1) > 0
        return stats
    rows = conn.execute(_reads(conn), {**marks.range_params(after, upto), "limit": limit}).all()
    if len({r[0] for r in rows}) == limit:  # a full chunk: the next one starts after its last event
        upto = marks.Mark(int(rows[-1][1] or 0), int(rows[-1][0]))
        stats.done = False
    seen: dict[tuple[int, str], _Seen] = {}
    unknown: dict[tuple[int, str, str], _Seen] = {}
    cred_seen: dict[int, datetime] = {}
    previous = None
    for event_id, _txid, occurred, fmt, value, building_id, cred_id, unit_id, person_id, _issued in rows:
        if event_id == previous:  # an older credential of the same event (newest issue first)
            continue
        previous = event_id
        stats.events += 1
        if building_id is None:
            stats.no_building += 1
            continue
        at = _aware(occurred)
        day = local_day(at, zone)
        if cred_id is None:
            stats.unknown += 1
            _fold(unknown, (building_id, fmt or "raw", value), at, day, building_id, None, None)
            continue
        cred_seen[cred_id] = max(at, cred_seen.get(cred_id, at))
        if unit_id is None:
            stats.no_unit += 1  # an access-era credential of a building without units
            continue
        stats.attributed += 1
        subject = f"p{person_id}" if person_id is not None else f"c{cred_id}"
        _fold(seen, (unit_id, subject), at, day, building_id, person_id, cred_id)
    _write_presence(conn, seen)
    _write_unknown(conn, unknown)
    _write_credentials(conn, cred_seen)
    stats.regrade_units = _close_seen_again(conn, now, seen)
    stats.cases_closed = len(stats.regrade_units)
    opened_in = _open_unknown(conn, now, rules, unknown)
    stats.cases_opened = len(opened_in)
    stats.regrade_buildings = set(opened_in)
    marks.write_mark(conn, WATERMARK, upto, now)
    stats.watermark = upto.id
    stats.waiting = stats.done and is_postgres(conn) and marks.lag(conn, upto, cap=1) > 0
    return stats


def _fold(into: dict[Any, _Seen], key: Any, at: datetime, day: int, building_id: int, person_id: int | None,
          cred_id: int | None) -> None:
    item = into.get(key)
    if item is None:
        into[key] = _Seen(at, at, {day}, 1, building_id, person_id, cred_id)
    else:
        item.add(at, day)
        item.credential_id = cred_id or item.credential_id


def _merge(old: tuple[Any, ...] | None, new: _Seen) -> dict[str, Any]:
    """The row after folding ``new`` into ``old`` (first_seen, last_seen,
    last_day, days_seen, events)."""
    if old is None:
        return {"first_seen_at": new.first, "last_seen_at": new.last, "last_day": max(new.days),
                "days_seen": len(new.days), "events": new.events}
    first, last, last_day, days_seen, events = old
    fresh = [d for d in new.days if d > last_day]
    return {"first_seen_at": min(_aware(first), new.first), "last_seen_at": max(_aware(last), new.last),
            "last_day": max([last_day, *fresh]), "days_seen": days_seen + len(fresh),
            "events": events + new.events}


# PostgreSQL element types of the key and value columns, for unnest(): one
# statement with a dozen array parameters instead of thousands of scalars
# (which psycopg spends longer converting than the server does executing).
_PG_TYPES = {"unit_id": "bigint", "subject": "text", "building_id": "bigint", "person_id": "bigint",
             "credential_id": "bigint", "format": "text", "value": "text", "first_seen_at": "timestamptz",
             "last_seen_at": "timestamptz", "last_day": "integer", "days_seen": "integer", "events": "bigint"}
_COUNTS = ["first_seen_at", "last_seen_at", "last_day", "days_seen", "events"]


def _unnest(cols: list[str]) -> str:
    return "unnest(" + ", ".join(f"CAST(:{c} AS {_PG_TYPES[c]}[])" for c in cols) + ")"


def _existing(conn: sa.Connection, table: sa.Table, key_cols: list[str], keys: list[tuple[Any, ...]],
              ) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    found: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    if not keys:
        return found
    n = len(key_cols)
    if is_postgres(conn):
        # LATERAL: one index probe per key, whatever the planner guesses
        # about the size of the unnest.
        on = " AND ".join(f"t.{c} = k.{c}" for c in key_cols)
        sql = (f"SELECT {', '.join('k.' + c for c in key_cols)}, {', '.join('t.' + c for c in _COUNTS)} "
               f"FROM {_unnest(key_cols)} AS k({', '.join(key_cols)}) "
               f"CROSS JOIN LATERAL (SELECT * FROM {table.name} t WHERE {on}) t")
        values = {c: [k[i] for k in keys] for i, c in enumerate(key_cols)}
        for row in conn.execute(sa.text(sql), values):
            found[tuple(row[:n])] = tuple(row[n:])
        return found
    cols = [table.c[k] for k in key_cols]
    for start in range(0, len(keys), 2000):
        query = (sa.select(*cols, *(table.c[c] for c in _COUNTS))
                 .where(sa.tuple_(*cols).in_(keys[start:start + 2000])))
        for row in conn.execute(query):
            found[tuple(row[:n])] = tuple(row[n:])
    return found


def _upsert(conn: sa.Connection, table: sa.Table, key_cols: list[str], rows: list[dict[str, Any]],
            extra: list[str]) -> None:
    if not rows:
        return
    updated = _COUNTS + extra
    if is_postgres(conn):
        cols = list(rows[0])
        sql = (f"INSERT INTO {table.name} ({', '.join(cols)}) SELECT * FROM {_unnest(cols)} "
               f"ON CONFLICT ({', '.join(key_cols)}) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in updated))
        conn.execute(sa.text(sql), {c: [r[c] for r in rows] for c in cols})
        return
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    stmt = sqlite_insert(table)
    stmt = stmt.on_conflict_do_update(index_elements=key_cols, set_={c: stmt.excluded[c] for c in updated})
    conn.execute(stmt, rows)


def _write_presence(conn: sa.Connection, seen: dict[tuple[int, str], _Seen]) -> None:
    old = _existing(conn, presence, ["unit_id", "subject"], list(seen))
    rows = [{"unit_id": k[0], "subject": k[1], "building_id": v.building_id, "person_id": v.person_id,
             "credential_id": v.credential_id, **_merge(old.get(k), v)} for k, v in seen.items()]
    _upsert(conn, presence, ["unit_id", "subject"], rows, ["credential_id"])


def _write_unknown(conn: sa.Connection, unknown: dict[tuple[int, str, str], _Seen]) -> None:
    old = _existing(conn, unknown_credentials, ["building_id", "format", "value"], list(unknown))
    rows = [{"building_id": k[0], "format": k[1], "value": k[2], **_merge(old.get(k), v)}
            for k, v in unknown.items()]
    _upsert(conn, unknown_credentials, ["building_id", "format", "value"], rows, [])


def _write_credentials(conn: sa.Connection, cred_seen: dict[int, datetime]) -> None:
    if not cred_seen:
        return
    if is_postgres(conn):
        conn.execute(sa.text(
            "UPDATE credentials c SET last_seen_at = k.at "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:ats AS timestamptz[])) AS k(id, at) "
            "WHERE c.id = k.id AND (c.last_seen_at IS NULL OR c.last_seen_at < k.at)"),
            {"ids": list(cred_seen), "ats": list(cred_seen.values())})
        return
    stmt = (sa.update(credentials)
            .where(credentials.c.id == sa.bindparam("cid"),
                   sa.or_(credentials.c.last_seen_at.is_(None), credentials.c.last_seen_at < sa.bindparam("at")))
            .values(last_seen_at=sa.bindparam("at")))
    conn.execute(stmt, [{"cid": k, "at": v} for k, v in cred_seen.items()])


def _close_seen_again(conn: sa.Connection, now: datetime, seen: dict[tuple[int, str], _Seen]) -> set[int]:
    """A presumed departure ends the moment its person is seen again at the
    unit after the last evidence the case was opened on. Returns the units
    of the cases closed."""
    unit_ids = sorted({k[0] for k, v in seen.items() if v.person_id is not None})
    if not unit_ids:
        return set()
    from server.db.models import cases

    # By unit: cases are indexed on (unit_id, state).
    in_units = (cases.c.unit_id == sa.any_(sa.bindparam("units", unit_ids, type_=ARRAY(sa.BigInteger)))
                if is_postgres(conn) else cases.c.unit_id.in_(unit_ids))
    open_cases = conn.execute(
        sa.select(cases.c.id, cases.c.person_id, cases.c.unit_id, cases.c.evidence_at)
        .where(in_units, cases.c.state.in_(("open", "acknowledged")), cases.c.kind == "presumed_departure")).all()
    units_of: dict[int, int] = {}
    for case_id, person_id, unit_id, evidence_at in open_cases:
        item = seen.get((unit_id, f"p{person_id}"))
        if item is not None and (evidence_at is None or item.last > evidence_at):
            units_of[case_id] = unit_id
    closed = case_ops.close_cases(conn, now, ACTOR, list(units_of), resolution="seen_again")
    return {units_of[case_id] for case_id in closed}


def _open_unknown(conn: sa.Connection, now: datetime, rules: CityRules,
                  unknown: dict[tuple[int, str, str], _Seen]) -> list[int]:
    """Unknown credential cases open at once (the sweep applies the
    distinct-days threshold when it is above one day). Returns the building
    of each case opened."""
    if not unknown:
        return []
    from server.reconcile.sweep import open_unknown_credentials

    return open_unknown_credentials(conn, now, rules, keys=list(unknown))
