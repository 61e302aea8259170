"""Incremental reconciliation of unit door cameras: crossings become per-unit,
per-day figures (``camera_days``) that the sweep's rules read
(server/reconcile/camera_rules.py).

A camera event counts only at a door mapped to a unit (``doors``) of the
building its gateway is in now, with ``camera`` set. Per unit and camera day
(a local day that begins at ``camera_day_start_hour``) it keeps: people in
(the three inward kinds, wire.INWARD_ALERT_KINDS plus an inward
people_crossing), people out, unidentified entries and tailgating entries,
and a running count of people inside: +1 in, -1 out, never below 0, back to
0 when a new camera day begins; ``peak`` is its highest value that day.

Why that count: with the clamp, the count at any moment is the largest
(in - out) over any stretch since the day began, which is the fewest people
who can be inside given the crossings (nobody can be inside fewer than 0
times). It is a lower bound, not a census: people who stay in all day are
not counted, and a missed exit or a doubled entry drifts it upwards, which
the daily reset bounds to one day. docs/reconcile.md, "Camera evidence".

The fold has its own watermark (reconcile_state "camera") and chunks, so a
backlog of card reads never makes a camera chunk unbounded, nor the reverse.
An event older than its unit's running day (a replayed outbox) adds to its
day's counts but leaves that day's running count and peak as they were.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from server.db.models import camera_days
from server.db.types import JsonDoc, UtcDateTime
from server.reconcile import marks
from server.reconcile.evidence import aware, read_watermark
from server.reconcile.sqlbits import is_postgres
from server.rules import CityRules

log = logging.getLogger(__name__)

WATERMARK = "camera"
# Events one chunk looks through, at most (a multiple of the row limit):
# the range is scanned in watermark order by index, so this bounds a chunk's
# work even when few of the events in it come from cameras.
SPAN_PER_ROW = 20

_CROSSINGS = """
SELECT e.id, e.occurred_at, e.kind, e.data, d.unit_id, d.building_id, e.txid
FROM events e
JOIN gateways g ON g.id = e.gateway_id
JOIN doors d ON d.gateway_id = e.gateway_id AND d.door = e.door AND d.building_id = g.building_id
WHERE {range} AND e.kind IN ('people_crossing', 'tailgating', 'unidentified_entry')
  AND d.unit_id IS NOT NULL AND d.camera
ORDER BY {order}
LIMIT :limit
"""


def _crossings(conn: sa.Connection) -> sa.TextualSelect:
    sql = _CROSSINGS.format(range=marks.keyset_range(conn, "e"), order=marks.keyset_order(conn, "e"))
    return sa.text(sql).columns(occurred_at=UtcDateTime(), data=JsonDoc)


_COLUMNS = ("entered", "exited", "unidentified", "tailgating", "level", "peak", "first_at", "last_at")


def camera_day(at: datetime, zone: ZoneInfo, start_hour: int) -> int:
    """The camera day of a moment: the local date of ``at - start_hour``,
    numbered like evidence.local_day."""
    return (at.astimezone(zone) - timedelta(hours=start_hour)).date().toordinal()


@dataclass
class CameraStats:
    events: int = 0  # camera events at mapped unit doors
    watermark: int = 0
    done: bool = True  # the watermark reached the newest event


@dataclass
class _Day:
    building_id: int
    entered: int = 0
    exited: int = 0
    unidentified: int = 0
    tailgating: int = 0
    level: int = 0
    peak: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None

    def seen(self, at: datetime) -> None:
        self.first_at = at if self.first_at is None else min(self.first_at, at)
        self.last_at = at if self.last_at is None else max(self.last_at, at)


def _inward(kind: str, data: Any) -> bool | None:
    """True for an entry, False for an exit, None for a row that is neither
    (ingest validated it, so only a hand-edited row gets here)."""
    if kind in ("tailgating", "unidentified_entry"):
        return True
    direction = data.get("direction") if isinstance(data, dict) else None
    return {"in": True, "out": False}.get(direction) if isinstance(direction, str) else None


def apply_chunk(conn: sa.Connection, rules: CityRules, *, limit: int) -> CameraStats:
    """Fold at most ``limit`` camera events after the watermark, in the
    caller's write transaction (serialised like evidence.apply_chunk)."""
    stats = CameraStats()
    marks.generic_plans(conn)
    after = read_watermark(conn, lock=True, name=WATERMARK)
    stats.watermark = after.id
    newest = marks.newest(conn)
    if newest is None or newest <= after:
        return stats
    upto = marks.step_ahead(conn, after, newest, limit * SPAN_PER_ROW)
    rows = conn.execute(_crossings(conn), {**marks.range_params(after, upto), "limit": limit}).all()
    if len(rows) == limit:  # one row per event (doors are unique per gateway and door)
        upto = marks.Mark(int(rows[-1][6] or 0), int(rows[-1][0]))
    stats.done = upto >= newest
    if rows:
        _fold(conn, rules, rows)
    marks.write_mark(conn, WATERMARK, upto)
    stats.events, stats.watermark = len(rows), upto.id
    return stats


def _fold(conn: sa.Connection, rules: CityRules, rows: Sequence[Any]) -> None:
    zone, hour = rules.zone, rules.camera_day_start_hour
    units = sorted({int(r[4]) for r in rows})
    keyed = [(int(r[4]), camera_day(aware(r[1]), zone, hour)) for r in rows]
    days = _load(conn, units, sorted(set(keyed)))
    running = _running_days(conn, units)
    for row, (unit_id, day) in zip(rows, keyed, strict=True):
        _, occurred, kind, data, _, building_id, _ = row
        inward = _inward(kind, data)
        if inward is None:
            continue
        at = aware(occurred)
        item = days.get((unit_id, day))
        if item is None:
            item = days[(unit_id, day)] = _Day(int(building_id))
        current = running.get(unit_id)
        if current is None or day > current:
            running[unit_id] = current = day  # a new camera day: the count starts again from 0
        item.seen(at)
        if inward:
            item.entered += 1
            item.unidentified += kind == "unidentified_entry"
            item.tailgating += kind == "tailgating"
        else:
            item.exited += 1
        if day == current:
            item.level = item.level + 1 if inward else max(0, item.level - 1)
            item.peak = max(item.peak, item.level)
    _write(conn, days)


def _load(conn: sa.Connection, units: list[int], keys: list[tuple[int, int]]) -> dict[tuple[int, int], _Day]:
    c = camera_days.c
    lo, hi = min(k[1] for k in keys), max(k[1] for k in keys)
    query = (sa.select(c.unit_id, c.day, c.building_id, *(c[n] for n in _COLUMNS))
             .where(c.unit_id.in_(units), c.day >= lo, c.day <= hi))
    wanted = set(keys)
    found = {}
    for row in conn.execute(query).mappings():
        key = (int(row["unit_id"]), int(row["day"]))
        if key in wanted:
            found[key] = _Day(int(row["building_id"]), entered=row["entered"], exited=row["exited"],
                              unidentified=row["unidentified"], tailgating=row["tailgating"], level=row["level"],
                              peak=row["peak"], first_at=aware(row["first_at"]), last_at=aware(row["last_at"]))
    return found


def _running_days(conn: sa.Connection, units: list[int]) -> dict[int, int]:
    """Each unit's newest camera day so far: the one its running count is for."""
    c = camera_days.c
    rows = conn.execute(sa.select(c.unit_id, sa.func.max(c.day)).where(c.unit_id.in_(units)).group_by(c.unit_id))
    return {int(u): int(d) for u, d in rows}


def _write(conn: sa.Connection, days: dict[tuple[int, int], _Day]) -> None:
    rows = [{"unit_id": k[0], "day": k[1], "building_id": v.building_id, **{n: getattr(v, n) for n in _COLUMNS}}
            for k, v in days.items() if v.first_at is not None]
    if not rows:
        return
    stmt: sa.Executable
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(camera_days)
        stmt = pg.on_conflict_do_update(index_elements=["unit_id", "day"],
                                        set_={n: pg.excluded[n] for n in _COLUMNS})
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite = sqlite_insert(camera_days)
        stmt = lite.on_conflict_do_update(index_elements=["unit_id", "day"],
                                          set_={n: lite.excluded[n] for n in _COLUMNS})
    conn.execute(stmt, rows)


def purge_old_days(conn: sa.Connection, rules: CityRules, now: datetime) -> int:
    """Camera days older than every window a rule reads (twice the longer of
    the silence period and the occupancy window) go: they count for nothing."""
    keep = 2 * max(rules.silence_days, float(rules.camera_window_days))
    oldest = camera_day(now - timedelta(days=keep), rules.zone, rules.camera_day_start_hour)
    result = conn.execute(sa.delete(camera_days).where(camera_days.c.day < oldest))
    return int(result.rowcount or 0)
