"""Unit grades 放心 / 一般 / 重点 / 严控 (trusted / normal / watch / strict)
from the scoring table of docs/reconcile.md (points in server.rules.GradeRules),
recomputed set-based: the history of the units whose grade changes and the
update of their grades, in one statement on PostgreSQL (two on SQLite)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.db.models import units
from server.reconcile.sqlbits import ACTOR, OPEN_STATES_SQL, distinct, is_postgres, json_array, json_object, least, ts
from server.rules import CityRules


def _scores(conn: sa.Connection, *, restricted: bool) -> str:
    past = least(conn, "COALESCE(pc.n, 0) * :p_past", ":p_past_max")
    # Restricted: every subquery is cut to the units (or their buildings) so
    # that regrading a few units never scans every case.
    # PostgreSQL takes the ids as one array; SQLite as an expanded IN list.
    ids = "= ANY(CAST(:unit_ids AS bigint[]))" if is_postgres(conn) else "IN :unit_ids"
    where = f"WHERE u.id {ids}" if restricted else ""
    by_unit = f"AND unit_id {ids}" if restricted else ""
    by_building = f"AND building_id IN (SELECT building_id FROM units WHERE id {ids})" if restricted else ""
    return f"""
SELECT u.id AS unit_id, s.score,
       CASE WHEN s.score >= :strict_from THEN 'strict' WHEN s.score >= :watch_from THEN 'watch'
            WHEN s.score >= :normal_from THEN 'normal' ELSE 'trusted' END AS grade
FROM units u JOIN (
  SELECT u.id, COALESCE(oc.pts, 0) + COALESCE(bu.n, 0) * :p_unknown
         + CASE WHEN b.is_rental AND b.pledge_signed_at IS NULL THEN :p_pledge ELSE 0 END + {past} AS score
  FROM units u JOIN buildings b ON b.id = u.building_id
  LEFT JOIN (SELECT unit_id, SUM(CASE kind WHEN 'unregistered_occupant' THEN :p_unreg
                                           WHEN 'overcrowding' THEN :p_crowd
                                           WHEN 'address_mismatch' THEN :p_mismatch
                                           WHEN 'presumed_departure' THEN :p_departure
                                           WHEN 'credential_unused' THEN :p_unused ELSE 0 END) AS pts
             FROM cases WHERE state IN {OPEN_STATES_SQL} AND unit_id IS NOT NULL {by_unit} GROUP BY unit_id) oc
         ON oc.unit_id = u.id
  LEFT JOIN (SELECT building_id, COUNT(*) AS n FROM cases
             WHERE kind = 'unknown_credential' AND state IN {OPEN_STATES_SQL} {by_building}
             GROUP BY building_id) bu
         ON bu.building_id = u.building_id
  LEFT JOIN (SELECT unit_id, COUNT(*) AS n FROM cases
             WHERE state IN ('resolved', 'auto_closed') AND closed_at >= :history_from AND unit_id IS NOT NULL
                   {by_unit} GROUP BY unit_id) pc ON pc.unit_id = u.id
  {where}
) s ON s.id = u.id"""


def _values(rules: CityRules, now: datetime) -> dict[str, Any]:
    g = rules.grades
    return {"p_unreg": g.points_unregistered_occupant, "p_crowd": g.points_overcrowding,
            "p_mismatch": g.points_address_mismatch, "p_departure": g.points_presumed_departure,
            "p_unused": g.points_credential_unused, "p_unknown": g.points_unknown_credential,
            "p_pledge": g.points_pledge_missing, "p_past": g.points_per_past_case,
            "p_past_max": g.past_case_points_max, "history_from": now - timedelta(days=g.history_days),
            "normal_from": g.normal_from, "watch_from": g.watch_from, "strict_from": g.strict_from,
            "now": now, "actor": ACTOR}


def units_of(conn: sa.Connection, building_ids: Collection[int]) -> set[int]:
    """The units of ``building_ids``."""
    if not building_ids:
        return set()
    found: set[int] = set()
    ids = sorted(building_ids)
    for start in range(0, len(ids), 5000):
        found.update(conn.execute(sa.select(units.c.id).where(units.c.building_id.in_(ids[start:start + 5000])))
                     .scalars())
    return found


def regrade(conn: sa.Connection, now: datetime, rules: CityRules, unit_ids: Collection[int] | None = None) -> int:
    """Recompute the grade of ``unit_ids`` (None: every unit); returns how
    many units changed grade. Score-only changes update the score silently."""
    if unit_ids is not None and not unit_ids:
        return 0
    scores = _scores(conn, restricted=unit_ids is not None)
    values = _values(rules, now)
    binds: list[sa.BindParameter[Any]] = [ts("history_from"), ts("now")]
    if unit_ids is not None:
        values["unit_ids"] = sorted(unit_ids)
        if not is_postgres(conn):
            binds.append(sa.bindparam("unit_ids", expanding=True))
    changes = json_object(conn, {"grade": json_array(conn, "u.grade", "g.grade"),
                                 "score": json_array(conn, "u.grade_score", "g.score")})
    if is_postgres(conn):
        # One statement: the scores computed once (for every unit of a city,
        # 1.5 s) for both the history and the update. Both parts see the
        # grades from before the statement, so history has old and new.
        return int(conn.execute(sa.text(f"""
WITH g AS MATERIALIZED ({scores}),
changed AS (
  INSERT INTO history (at, actor, entity, entity_id, action, changes)
  SELECT :now, :actor, 'unit', u.id, 'graded', {changes}
  FROM units u JOIN g ON g.unit_id = u.id
  WHERE {distinct(conn, 'u.grade', 'g.grade')}
  RETURNING 1),
updated AS (
  UPDATE units SET grade = g.grade, grade_score = g.score, grade_at = :now
  FROM g
  WHERE units.id = g.unit_id AND ({distinct(conn, 'units.grade', 'g.grade')}
                                   OR {distinct(conn, 'units.grade_score', 'g.score')})
  RETURNING 1)
SELECT (SELECT COUNT(*) FROM changed)""").bindparams(*binds), values).scalar_one())
    changed = conn.execute(sa.text(f"""
INSERT INTO history (at, actor, entity, entity_id, action, changes)
SELECT :now, :actor, 'unit', u.id, 'graded', {changes}
FROM units u JOIN ({scores}) g ON g.unit_id = u.id
WHERE {distinct(conn, 'u.grade', 'g.grade')}""").bindparams(*binds), values).rowcount
    conn.execute(sa.text(f"""
UPDATE units SET grade = g.grade, grade_score = g.score, grade_at = :now
FROM ({scores}) g
WHERE units.id = g.unit_id AND ({distinct(conn, 'units.grade', 'g.grade')}
                                 OR {distinct(conn, 'units.grade_score', 'g.score')})""").bindparams(*binds), values)
    return int(changed)
