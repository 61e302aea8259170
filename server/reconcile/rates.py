"""The four rates (四率) per grid, rolled up to community, street and district.

Definitions (docs/reconcile.md, "The four rates"):
- registration: active registrations / (active registrations + open
  unregistered_occupant cases), by the building's grid;
- rental: occupied buildings marked is_rental / occupied buildings, where
  occupied means an active registration or an open unregistered_occupant case;
- consistency: active registrations with no open address_mismatch or
  presumed_departure case naming them / active registrations;
- pledge: rental buildings with pledge_signed_at / rental buildings.
A few GROUP BY grid statements, then the sums are carried up the area tree in
Python; buildings with no grid count nowhere.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.db.models import areas, rate_snapshots
from server.reconcile.sqlbits import OPEN_STATES_SQL, is_postgres
from server.rules import CityRules
from server.web.errors import InvalidInput, NotFound

RATES = ("registration", "rental", "consistency", "pledge")


@dataclass(frozen=True)
class Ratio:
    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None

    def __add__(self, other: Ratio) -> Ratio:
        return Ratio(self.numerator + other.numerator, self.denominator + other.denominator)

    def as_json(self) -> dict[str, Any]:
        return {"numerator": self.numerator, "denominator": self.denominator, "value": self.value}


ZERO = Ratio(0, 0)


@dataclass(frozen=True)
class AreaRates:
    code: str
    level: str
    name: str
    parent_code: str | None
    registration: Ratio
    rental: Ratio
    consistency: Ratio
    pledge: Ratio

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "level": self.level, "name": self.name, "parent_code": self.parent_code,
                **{r: getattr(self, r).as_json() for r in RATES}}


_REGISTRATIONS = f"""
SELECT b.grid_id, COUNT(*), SUM(CASE WHEN x.registration_id IS NULL THEN 1 ELSE 0 END)
FROM registrations r JOIN buildings b ON b.id = r.building_id
LEFT JOIN (SELECT DISTINCT registration_id FROM cases
           WHERE kind IN ('address_mismatch', 'presumed_departure') AND state IN {OPEN_STATES_SQL}
             AND registration_id IS NOT NULL) x ON x.registration_id = r.id
WHERE r.status = 'active' AND b.grid_id IS NOT NULL
GROUP BY b.grid_id"""

_UNREGISTERED = f"""
SELECT b.grid_id, COUNT(*) FROM cases c JOIN buildings b ON b.id = c.building_id
WHERE c.kind = 'unregistered_occupant' AND c.state IN {OPEN_STATES_SQL} AND b.grid_id IS NOT NULL
GROUP BY b.grid_id"""


def _buildings(conn: sa.Connection) -> str:
    rental = "b.is_rental" if is_postgres(conn) else "b.is_rental = 1"
    return f"""
SELECT b.grid_id,
       SUM(CASE WHEN o.building_id IS NOT NULL THEN 1 ELSE 0 END),
       SUM(CASE WHEN o.building_id IS NOT NULL AND {rental} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {rental} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {rental} AND b.pledge_signed_at IS NOT NULL THEN 1 ELSE 0 END)
FROM buildings b
LEFT JOIN (SELECT building_id FROM registrations WHERE status = 'active'
           UNION
           SELECT building_id FROM cases WHERE kind = 'unregistered_occupant' AND state IN {OPEN_STATES_SQL}) o
       ON o.building_id = b.id
WHERE b.grid_id IS NOT NULL
GROUP BY b.grid_id"""


def compute_rates(conn: sa.Connection, rules: CityRules, now: datetime) -> dict[str, AreaRates]:
    """The four rates of every area, keyed by area code. ``rules`` and
    ``now`` are part of the interface for rules that depend on time; the
    present definitions read the current cases."""
    per_grid: dict[int, dict[str, Ratio]] = defaultdict(lambda: dict.fromkeys(RATES, ZERO))
    unregistered = {g: int(n) for g, n in conn.execute(sa.text(_UNREGISTERED))}
    for grid, active, consistent in conn.execute(sa.text(_REGISTRATIONS)):
        per_grid[grid]["registration"] = Ratio(int(active), int(active) + unregistered.pop(grid, 0))
        per_grid[grid]["consistency"] = Ratio(int(consistent), int(active))
    for grid, n in unregistered.items():
        per_grid[grid]["registration"] = Ratio(0, n)
    for grid, occupied, occupied_rental, rental, pledged in conn.execute(sa.text(_buildings(conn))):
        per_grid[grid]["rental"] = Ratio(int(occupied_rental or 0), int(occupied or 0))
        per_grid[grid]["pledge"] = Ratio(int(pledged or 0), int(rental or 0))
    rows = conn.execute(sa.select(areas.c.id, areas.c.code, areas.c.level, areas.c.name, areas.c.parent_id)).all()
    by_id = {r.id: r for r in rows}
    sums: dict[int, dict[str, Ratio]] = {r.id: dict.fromkeys(RATES, ZERO) for r in rows}
    for grid, ratios in per_grid.items():
        area_id: int | None = grid
        seen = 0
        while area_id is not None and area_id in by_id and seen < 8:  # 4 levels; a cycle must not hang us
            for rate in RATES:
                sums[area_id][rate] = sums[area_id][rate] + ratios[rate]
            area_id = by_id[area_id].parent_id
            seen += 1
    return {r.code: AreaRates(r.code, r.level, r.name, by_id[r.parent_id].code if r.parent_id in by_id else None,
                              **sums[r.id]) for r in rows}


def select_rates(rates: dict[str, AreaRates], *, level: str | None = None, code: str | None = None,
                 ) -> list[AreaRates]:
    """Filter for the API: one area (``code``), or every area of ``level``."""
    if code is not None:
        if code not in rates:
            raise NotFound("area", code)
        return [rates[code]]
    if level is not None and level not in ("district", "street", "community", "grid"):
        raise InvalidInput("level", "must be district, street, community or grid")
    return [r for r in rates.values() if level is None or r.level == level]


def write_snapshots(conn: sa.Connection, rules: CityRules, now: datetime, rates: dict[str, AreaRates]) -> int:
    """One row per area per local day (the last sweep of the day wins)."""
    day = now.astimezone(rules.zone).date()
    ids = dict(conn.execute(sa.select(areas.c.code, areas.c.id)).tuples().all())
    rows = [{"area_id": ids[code], "day": day, "taken_at": now,
             "counts": {rate: [getattr(r, rate).numerator, getattr(r, rate).denominator] for rate in RATES}}
            for code, r in rates.items() if code in ids]
    if not rows:
        return 0
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        stmt: Any = pg_insert(rate_snapshots)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        stmt = sqlite_insert(rate_snapshots)
    stmt = stmt.on_conflict_do_update(index_elements=["area_id", "day"],
                                      set_={"counts": stmt.excluded.counts, "taken_at": stmt.excluded.taken_at})
    conn.execute(stmt, rows)
    return len(rows)


def rate_history(conn: sa.Connection, area_code: str, days: int, *, today: date | None = None) -> list[dict[str, Any]]:
    """Daily snapshots of one area, oldest first: {"day", rate: {numerator, denominator, value}}."""
    if not 1 <= days <= 3660:
        raise InvalidInput("days", "must be 1..3660")
    area_id = conn.execute(sa.select(areas.c.id).where(areas.c.code == area_code)).scalar()
    if area_id is None:
        raise NotFound("area", area_code)
    since = (today or date.today()) - timedelta(days=days - 1)
    rows = conn.execute(sa.select(rate_snapshots.c.day, rate_snapshots.c.counts)
                        .where(rate_snapshots.c.area_id == area_id, rate_snapshots.c.day >= since)
                        .order_by(rate_snapshots.c.day)).all()
    out = []
    for day, counts in rows:
        doc: dict[str, Any] = {"day": day.isoformat()}
        for rate in RATES:
            num, den = counts.get(rate, [0, 0])
            doc[rate] = Ratio(int(num), int(den)).as_json()
        out.append(doc)
    return out
