"""Reads behind /overview: the four rates of an area and its children, the
trend of each rate, and the units of the area by grade."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.db.models import areas, buildings, rate_snapshots, units
from server.reconcile.rates import RATES, AreaRates, Ratio, compute_rates, rate_history
from server.rules import CityRules

TREND_DAYS = 30


@dataclass
class Overview:
    area: AreaRates | None  # None: the whole city (every district)
    children: list[AreaRates]
    trend: list[tuple[str, dict[str, Ratio]]]
    grades: dict[str | None, int]
    path: list[AreaRates] = field(default_factory=list)  # district ... area, for the breadcrumb


def _descendant_ids(conn: sa.Connection, area_code: str | None) -> list[int] | None:
    """Every area under (and including) the area; None for the whole city."""
    if area_code is None:
        return None
    rows = conn.execute(sa.select(areas.c.id, areas.c.code, areas.c.parent_id)).all()
    children: dict[int | None, list[int]] = defaultdict(list)
    start = None
    for row in rows:
        children[row.parent_id].append(row.id)
        if row.code == area_code:
            start = row.id
    if start is None:
        return []
    found: list[int] = []
    todo = [start]
    while todo and len(found) <= len(rows):
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def grade_counts(conn: sa.Connection, area_code: str | None) -> dict[str | None, int]:
    query = (sa.select(units.c.grade, sa.func.count()).join(buildings, buildings.c.id == units.c.building_id)
             .group_by(units.c.grade))
    ids = _descendant_ids(conn, area_code)
    if ids is not None:
        query = query.where(buildings.c.grid_id.in_(ids or [-1]))
    return {grade: int(count) for grade, count in conn.execute(query).tuples()}


def _sum_trends(histories: list[list[dict[str, Any]]]) -> list[tuple[str, dict[str, Ratio]]]:
    by_day: dict[str, dict[str, Ratio]] = {}
    for history in histories:
        for doc in history:
            day = by_day.setdefault(doc["day"], dict.fromkeys(RATES, Ratio(0, 0)))
            for rate in RATES:
                got = doc.get(rate) or {}
                day[rate] = day[rate] + Ratio(int(got.get("numerator", 0)), int(got.get("denominator", 0)))
    return sorted(by_day.items())


def overview(conn: sa.Connection, rules: CityRules, now: datetime, area_code: str | None) -> Overview | None:
    """None when ``area_code`` names no area."""
    rates = compute_rates(conn, rules, now)
    today = now.astimezone(rules.zone).date()
    # The trend ends at the newest snapshot: a sweep that stopped (or a
    # simulated district that ran in the past) still shows its last month.
    newest = conn.execute(sa.select(sa.func.max(rate_snapshots.c.day))).scalar()
    if newest is not None and newest < today:
        today = newest
    if area_code is not None and area_code not in rates:
        return None
    area = rates[area_code] if area_code is not None else None
    children = sorted((r for r in rates.values() if r.parent_code == area_code), key=lambda r: (r.name, r.code))
    trend_areas = [area] if area is not None else [r for r in rates.values() if r.parent_code is None]
    trend = _sum_trends([rate_history(conn, a.code, TREND_DAYS, today=today) for a in trend_areas])
    if trend and trend[-1][0] == now.astimezone(rules.zone).date().isoformat():
        # Today's point is today's figures, as in the bars above it: the
        # snapshot is only the last sweep's (at most an hour old), and a chart
        # that ends on another number than the bars reads as a contradiction.
        live = {rate: sum((getattr(a, rate) for a in trend_areas), Ratio(0, 0)) for rate in RATES}
        trend[-1] = (trend[-1][0], live)
    path: list[AreaRates] = []
    current = area
    while current is not None and len(path) < 8:
        path.insert(0, current)
        current = rates.get(current.parent_code) if current.parent_code else None
    return Overview(area, children, trend, grade_counts(conn, area_code), path)
