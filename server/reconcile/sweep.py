"""The time-driven rules, as a handful of set-based statements per rule.

Each rule is a *candidates* query: the subjects for which the rule's
condition holds now. The sweep opens a case for every candidate without an
open one and auto-closes every open case whose subject is no longer a
candidate; the same query serves both, so opening and closing can never
disagree. See docs/reconcile.md for each rule in words.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.access.allowlists import Change
from server.db.models import cases
from server.grid import case_tasks
from server.reconcile import camera_rules
from server.reconcile import cases as case_ops
from server.reconcile.sqlbits import (
    ACTOR,
    OPEN_STATES_SQL,
    days,
    greatest,
    is_postgres,
    json_object,
    json_text,
    plus_days,
    ts,
)
from server.rules import CityRules

log = logging.getLogger(__name__)

_CANDIDATES = "reconcile_candidates"
_TIME_PARAMS = ("now", "deadline", "silence", "unused", "due")


@dataclass
class RuleCounts:
    opened: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)
    ended_registrations: list[int] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    touched_units: set[int] = field(default_factory=set)
    # Seconds per step ("rule:<kind>", "expire", "grades", "rates"): where a
    # slow sweep spends its time.
    timings: dict[str, float] = field(default_factory=dict)

    def add_closed(self, kind: str, n: int) -> None:
        if n:
            self.closed[kind] = self.closed.get(kind, 0) + n


def params(rules: CityRules, now: datetime) -> dict[str, Any]:
    return {"now": now, "deadline": now - days(rules.registration_deadline_days),
            "silence": now - days(rules.silence_days), "unused": now - days(rules.credential_unused_days),
            "due": now + days(rules.answer_days), "min_days": rules.living_min_days,
            "unknown_min_days": rules.unknown_credential_min_days} | camera_rules.params(rules, now)


def _text(sql: str) -> sa.TextClause:
    stmt = sa.text(sql)
    typed = [ts(name) for name in _TIME_PARAMS if f":{name}" in sql]
    return stmt.bindparams(*typed) if typed else stmt


# ---------------------------------------------------------------------------- candidates

def _living(conn: sa.Connection) -> str:
    """A presence row that still says someone lives at the unit: seen on
    enough days, lately, and still holding an active card there (a card taken
    back, or the tenancy's cards revoked when it ended, leave evidence of the
    past, not of now). After the subject's registration at the unit ended,
    only sightings from the next day on count, and the deadline runs from the
    ending."""
    return f"""(p.days_seen >= :min_days AND p.last_seen_at >= :silence
  AND EXISTS (SELECT 1 FROM credentials k WHERE k.unit_id = p.unit_id AND k.revoked_at IS NULL
      AND ((p.person_id IS NOT NULL AND k.person_id = p.person_id) OR (p.person_id IS NULL AND k.id = p.credential_id)))
  AND NOT EXISTS (SELECT 1 FROM registrations e WHERE p.person_id IS NOT NULL AND e.person_id = p.person_id
      AND e.unit_id = p.unit_id AND e.status = 'ended'
      AND (e.ended_at > :deadline OR p.last_seen_at <= {plus_days(conn, 'e.ended_at', 1)})))"""


_REGISTERED_ELSEWHERE = """(p.person_id IS NOT NULL AND EXISTS (SELECT 1 FROM registrations r
  WHERE r.person_id = p.person_id AND r.status = 'active' AND r.unit_id IS NOT NULL AND r.unit_id <> p.unit_id))"""
# Registered elsewhere and seen here since that registration began: a person
# seen here only before it is someone who moved, not a mismatch.
_SEEN_HERE_SINCE_REGISTERED_ELSEWHERE = """(p.person_id IS NOT NULL AND EXISTS (SELECT 1 FROM registrations r
  WHERE r.person_id = p.person_id AND r.status = 'active' AND r.unit_id IS NOT NULL AND r.unit_id <> p.unit_id
    AND r.valid_from < p.last_seen_at))"""


def _presence_evidence(conn: sa.Connection) -> str:
    return json_object(conn, {"first_seen": "p.first_seen_at", "last_seen": "p.last_seen_at",
                              "days_seen": "p.days_seen", "events": "p.events"})


# The presence rows that say someone lives at their unit without an active
# registration there: what unregistered_occupant, address_mismatch and
# overcrowding all start from. The sweep computes them once into this
# temporary table (materialise_unregistered_presence) and the three rules
# read it; each used to compute it again over every presence row, with two
# registration probes per row (1.9 s each at a million registrations).
UNREGISTERED_PRESENCE = "sweep_unregistered_presence"


def unregistered_presence(conn: sa.Connection) -> str:
    """The rows of UNREGISTERED_PRESENCE: a living presence row (_living)
    whose subject holds no active registration at the unit, with
    ``elsewhere`` (the person holds an active registration at another unit)
    and ``moved`` (and was seen here since that registration began).

    Persons and bare credentials go apart, each with the cheap filters first
    and the registration test as a plain anti-join, which PostgreSQL runs as
    one hash join over the active registrations instead of an index probe per
    presence row; the remaining conditions then only see the few rows left."""
    cols = ("p.unit_id, p.subject, p.building_id, p.person_id, p.credential_id, p.first_seen_at, "
            "p.last_seen_at, p.days_seen, p.events")
    return f"""
SELECT {cols},
       {_REGISTERED_ELSEWHERE} AS elsewhere, {_SEEN_HERE_SINCE_REGISTERED_ELSEWHERE} AS moved
FROM (SELECT {cols} FROM presence p
      WHERE p.person_id IS NOT NULL AND p.days_seen >= :min_days AND p.last_seen_at >= :silence
        AND NOT EXISTS (SELECT 1 FROM registrations r WHERE r.person_id = p.person_id AND r.status = 'active'
            AND (r.unit_id = p.unit_id OR (r.unit_id IS NULL AND r.building_id = p.building_id)))
      UNION ALL
      SELECT {cols} FROM presence p
      WHERE p.person_id IS NULL AND p.days_seen >= :min_days AND p.last_seen_at >= :silence
        AND NOT EXISTS (SELECT 1 FROM credentials c JOIN registrations r ON r.id = c.registration_id
            WHERE c.id = p.credential_id AND r.status = 'active')) p
WHERE {_living(conn)}"""


def materialise_unregistered_presence(conn: sa.Connection, values: dict[str, Any]) -> None:
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {UNREGISTERED_PRESENCE}"))
    conn.execute(_text(f"CREATE TEMP TABLE {UNREGISTERED_PRESENCE} AS {unregistered_presence(conn)}"), values)
    if is_postgres(conn):
        conn.execute(sa.text(f"ANALYZE {UNREGISTERED_PRESENCE}"))
    else:
        conn.execute(sa.text(f"CREATE INDEX temp.ix_{UNREGISTERED_PRESENCE} ON {UNREGISTERED_PRESENCE} (unit_id)"))


def unregistered_candidates(conn: sa.Connection, *, cameras: bool = False) -> str:
    """Card evidence, and with ``cameras`` unit door cameras' (one camera
    candidate per unit, only where no card evidence points at an
    unregistered person: server/reconcile/camera_rules.py). Reads
    UNREGISTERED_PRESENCE."""
    cards = f"""
SELECT 'u' || CAST(p.unit_id AS TEXT) || '/' || p.subject AS subject, p.building_id, p.unit_id, p.person_id,
       CAST(NULL AS BIGINT) AS registration_id, p.credential_id, p.first_seen_at AS evidence_at,
       {_presence_evidence(conn)} AS evidence
FROM {UNREGISTERED_PRESENCE} p
WHERE p.first_seen_at <= :deadline AND NOT p.elsewhere"""
    if not cameras:
        return cards
    return f"{cards}\nUNION ALL{camera_rules.unregistered_candidates(conn, UNREGISTERED_PRESENCE)}"


def mismatch_candidates(conn: sa.Connection) -> str:
    """Reads UNREGISTERED_PRESENCE."""
    return f"""
SELECT 'p' || CAST(p.person_id AS TEXT) AS subject, p.building_id, p.unit_id, p.person_id,
       (SELECT MIN(r.id) FROM registrations r WHERE r.person_id = p.person_id AND r.status = 'active'
          AND r.unit_id IS NOT NULL AND r.unit_id <> p.unit_id) AS registration_id,
       p.credential_id, p.first_seen_at AS evidence_at, {_presence_evidence(conn)} AS evidence
FROM {UNREGISTERED_PRESENCE} p
WHERE p.first_seen_at <= :deadline AND p.moved"""


def departure_candidates(conn: sa.Connection) -> str:
    """Active unit registrations whose last evidence is older than the
    silence period. Registrations that never had a credential are not judged:
    without a card there is no evidence to miss.

    The cheap tests go first (the registration itself and its presence row
    are older than the silence period), so the newest card issue is looked up
    per remaining registration by index; a join to every registration's
    newest issue aggregated all credentials (once per parallel worker,
    spilling to disk: 3.5 s at a million registrations)."""
    issued = "(SELECT MAX(k.issued_at) FROM credentials k WHERE k.registration_id = r.id)"
    last = greatest(conn, "r.valid_from", "COALESCE(pr.last_seen_at, r.valid_from)", issued,
                    "COALESCE(an.answered, r.valid_from)")
    return f"""
SELECT subject, building_id, unit_id, person_id, registration_id, credential_id, evidence_at,
       {json_object(conn, {"last_evidence": "evidence_at"})} AS evidence
FROM (SELECT 'r' || CAST(r.id AS TEXT) AS subject, r.building_id, r.unit_id, r.person_id,
             r.id AS registration_id, CAST(NULL AS BIGINT) AS credential_id, {last} AS evidence_at
      FROM registrations r
      LEFT JOIN presence pr ON pr.unit_id = r.unit_id AND pr.subject = 'p' || CAST(r.person_id AS TEXT)
      LEFT JOIN (SELECT registration_id, MAX(closed_at) AS answered FROM cases
                 WHERE kind = 'presumed_departure' AND resolution = 'still_resident'
                 GROUP BY registration_id) an ON an.registration_id = r.id
      WHERE r.status = 'active' AND r.unit_id IS NOT NULL AND r.valid_from < :silence
        AND (pr.last_seen_at IS NULL OR pr.last_seen_at < :silence)
        AND EXISTS (SELECT 1 FROM credentials k WHERE k.registration_id = r.id)) d
WHERE evidence_at < :silence"""


def overcrowding_candidates(conn: sa.Connection, *, cameras: bool = False) -> str:
    """Occupants: active registrations at the unit plus UNREGISTERED_PRESENCE."""
    occupants = f"""
SELECT r.unit_id FROM registrations r WHERE r.status = 'active' AND r.unit_id IS NOT NULL
UNION ALL
SELECT p.unit_id FROM {UNREGISTERED_PRESENCE} p"""
    if cameras:
        # Occupants: the larger of the record plus card evidence and the
        # camera's estimate; the evidence says which was which.
        counted = f"""
SELECT unit_id, MAX(CASE WHEN src = 1 THEN n END) AS counted, MAX(CASE WHEN src = 2 THEN n END) AS camera
FROM (SELECT unit_id, COUNT(*) AS n, 1 AS src FROM ({occupants}) x GROUP BY unit_id
      UNION ALL
      SELECT unit_id, n, 2 AS src FROM ({camera_rules.occupancy_estimates(conn)}) ce) y
GROUP BY unit_id"""
        n = greatest(conn, "COALESCE(o.counted, 0)", "COALESCE(o.camera, 0)")
        evidence = json_object(conn, {"occupants": n, "capacity": "u.capacity", "counted": "COALESCE(o.counted, 0)",
                                      "camera_estimate": "o.camera"})
        return f"""
SELECT 'u' || CAST(u.id AS TEXT) AS subject, u.building_id, u.id AS unit_id, CAST(NULL AS BIGINT) AS person_id,
       CAST(NULL AS BIGINT) AS registration_id, CAST(NULL AS BIGINT) AS credential_id,
       CAST(NULL AS TIMESTAMP) AS evidence_at, {evidence} AS evidence
FROM units u JOIN ({counted}) o ON o.unit_id = u.id
WHERE {n} > u.capacity"""
    return f"""
SELECT 'u' || CAST(u.id AS TEXT) AS subject, u.building_id, u.id AS unit_id, CAST(NULL AS BIGINT) AS person_id,
       CAST(NULL AS BIGINT) AS registration_id, CAST(NULL AS BIGINT) AS credential_id,
       CAST(NULL AS TIMESTAMP) AS evidence_at,
       {json_object(conn, {"occupants": "o.n", "capacity": "o.capacity"})} AS evidence
FROM (SELECT u.id, u.building_id, u.capacity, COUNT(*) AS n
      FROM units u JOIN ({occupants}) x ON x.unit_id = u.id
      GROUP BY u.id, u.building_id, u.capacity) o
JOIN units u ON u.id = o.id
WHERE o.n > o.capacity"""


def unknown_candidates(conn: sa.Connection, extra: str = "") -> str:
    return f"""
SELECT 'b' || CAST(uc.building_id AS TEXT) || '/' || uc.format || '/' || uc.value AS subject, uc.building_id,
       CAST(NULL AS BIGINT) AS unit_id, CAST(NULL AS BIGINT) AS person_id, CAST(NULL AS BIGINT) AS registration_id,
       CAST(NULL AS BIGINT) AS credential_id, uc.first_seen_at AS evidence_at,
       {json_object(conn, {"format": "uc.format", "value": "uc.value", "first_seen": "uc.first_seen_at",
                           "last_seen": "uc.last_seen_at", "days_seen": "uc.days_seen", "events": "uc.events"})}
         AS evidence
FROM unknown_credentials uc
WHERE uc.days_seen >= :unknown_min_days AND uc.last_seen_at >= :silence {extra}
  AND NOT EXISTS (SELECT 1 FROM credentials c WHERE c.building_id = uc.building_id AND c.format = uc.format
                  AND c.value = uc.value AND c.revoked_at IS NULL)"""


def unused_candidates(conn: sa.Connection) -> str:
    return f"""
SELECT 'c' || CAST(c.id AS TEXT) AS subject, c.building_id, r.unit_id, r.person_id, r.id AS registration_id,
       c.id AS credential_id, c.issued_at AS evidence_at,
       {json_object(conn, {"format": "c.format", "issued_at": "c.issued_at"})} AS evidence
FROM credentials c JOIN registrations r ON r.id = c.registration_id
WHERE r.status = 'active' AND c.revoked_at IS NULL AND c.last_seen_at IS NULL AND c.issued_at <= :unused"""


# ---------------------------------------------------------------------------- open and close


def open_cases(conn: sa.Connection, now: datetime, kind: str, candidates: str, values: dict[str, Any],
               *, due: bool = False) -> list[Any]:
    """Open a case for every candidate without an open one; (id, kind, subject) of each opened."""
    sql = f"""
INSERT INTO cases (kind, subject, state, building_id, unit_id, person_id, registration_id, credential_id,
                   evidence_at, evidence, opened_at, due_at, updated_at)
SELECT '{kind}', x.subject, 'open', x.building_id, x.unit_id, x.person_id, x.registration_id, x.credential_id,
       x.evidence_at, x.evidence, :now, {':due' if due else 'NULL'}, :now
FROM ({candidates}) x
WHERE NOT EXISTS (SELECT 1 FROM cases c WHERE c.kind = '{kind}' AND c.subject = x.subject
                  AND c.state IN {OPEN_STATES_SQL})
ON CONFLICT DO NOTHING
RETURNING id, kind, subject, unit_id"""
    rows = conn.execute(_text(sql), values).all()
    case_ops.record_opened(conn, now, ACTOR, rows)
    return list(rows)


def stale_cases(conn: sa.Connection, kind: str, candidates: str, values: dict[str, Any],
                *, where: str = "") -> list[Any]:
    """(id, unit_id) of open cases of ``kind`` whose subject is no longer a candidate."""
    # ``candidates`` should read a materialised table (run_rule): against a
    # view-like subquery or a CTE PostgreSQL may pick a nested loop, which
    # took minutes on a large city.
    sql = f"""
SELECT c.id, c.unit_id FROM cases c
WHERE c.kind = '{kind}' AND c.state IN {OPEN_STATES_SQL} {where}
  AND NOT EXISTS (SELECT 1 FROM ({candidates}) x WHERE x.subject = c.subject)"""
    return list(conn.execute(_text(sql), values).all())


def _close(conn: sa.Connection, now: datetime, counts: RuleCounts, kind: str, rows: Sequence[Any],
           resolution: str) -> None:
    closed = case_ops.close_cases(conn, now, ACTOR, [r[0] for r in rows], resolution=resolution)
    counts.add_closed(kind, len(closed))
    counts.touched_units.update(r[1] for r in rows if r[1] is not None)


def _registered_now(conn: sa.Connection, kind: str, values: dict[str, Any]) -> str:
    """Open unregistered cases whose subject now holds an active registration at the unit."""
    return f"""
SELECT c.id, c.unit_id FROM cases c
WHERE c.kind = '{kind}' AND c.state IN {OPEN_STATES_SQL}
  AND ((c.person_id IS NOT NULL AND EXISTS (SELECT 1 FROM registrations r WHERE r.person_id = c.person_id
          AND r.status = 'active' AND (r.unit_id = c.unit_id OR r.unit_id IS NULL AND r.building_id = c.building_id)))
    OR (c.person_id IS NULL AND EXISTS (SELECT 1 FROM credentials k JOIN registrations r ON r.id = k.registration_id
          WHERE k.id = c.credential_id AND r.status = 'active')))"""


def run_rule(conn: sa.Connection, now: datetime, counts: RuleCounts, kind: str, candidates: str,
             values: dict[str, Any], *, first_close: tuple[str, str] | None = None,
             resolution: str = "condition_cleared", due: bool = False) -> None:
    """Close what no longer holds (``first_close``: a query and resolution
    tried first, for a more telling resolution), then open what is new."""
    started = time.perf_counter()
    if first_close is not None:
        _close(conn, now, counts, kind, conn.execute(_text(first_close[0]), values).all(), first_close[1])
    # The candidates are computed once into a temporary table that both the
    # closing and the opening statement read.
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {_CANDIDATES}"))
    conn.execute(_text(f"CREATE TEMP TABLE {_CANDIDATES} AS {candidates}"), values)
    if is_postgres(conn):
        conn.execute(sa.text(f"ANALYZE {_CANDIDATES}"))  # hash joins need its size
    else:
        conn.execute(sa.text(f"CREATE INDEX temp.ix_{_CANDIDATES} ON {_CANDIDATES} (subject)"))
    materialised = f"SELECT * FROM {_CANDIDATES}"
    try:
        _close(conn, now, counts, kind, stale_cases(conn, kind, materialised, values), resolution)
        opened = open_cases(conn, now, kind, materialised, values, due=due)
    finally:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {_CANDIDATES}"))
    if opened:
        counts.opened[kind] = counts.opened.get(kind, 0) + len(opened)
        counts.touched_units.update(r[3] for r in opened if r[3] is not None)
    counts.timings[f"rule:{kind}"] = round(time.perf_counter() - started, 3)


def open_unknown_credentials(conn: sa.Connection, now: datetime, rules: CityRules, *,
                             keys: list[tuple[int, str, str]]) -> list[int]:
    """The incremental path's immediate unknown-credential cases, for the
    buildings of ``keys`` (the sweep covers the rest). Returns the building
    of each case opened."""
    values = params(rules, now) | {"building_ids": sorted({k[0] for k in keys})}
    extra = "AND uc.building_id IN :building_ids"
    stmt = _text(f"""
INSERT INTO cases (kind, subject, state, building_id, unit_id, person_id, registration_id, credential_id,
                   evidence_at, evidence, opened_at, due_at, updated_at)
SELECT 'unknown_credential', x.subject, 'open', x.building_id, x.unit_id, x.person_id, x.registration_id,
       x.credential_id, x.evidence_at, x.evidence, :now, NULL, :now
FROM ({unknown_candidates(conn, extra)}) x
WHERE NOT EXISTS (SELECT 1 FROM cases c WHERE c.kind = 'unknown_credential' AND c.subject = x.subject
                  AND c.state IN {OPEN_STATES_SQL})
ON CONFLICT DO NOTHING
RETURNING id, kind, subject, building_id""").bindparams(sa.bindparam("building_ids", expanding=True))
    rows = conn.execute(stmt, values).all()
    case_ops.record_opened(conn, now, ACTOR, rows)
    return [int(r[3]) for r in rows]


# ---------------------------------------------------------------------------- the rules


def run_rules(conn: sa.Connection, now: datetime, rules: CityRules, counts: RuleCounts) -> None:
    if is_postgres(conn):
        # No JIT for the rest of the sweep's transaction: its statements are
        # index probes and hash joins whose cost estimates pass jit_above_cost,
        # and compiling each (inlining, optimisation) took 0.3-1.6 s per rule
        # while saving less; the backend spent ~20 % less CPU without it.
        conn.execute(sa.text("SET LOCAL jit = off"))
    values = params(rules, now)
    cameras = camera_rules.enabled(rules)
    if cameras:
        _close(conn, now, counts, "unregistered_occupant",
               conn.execute(_text(camera_rules.registered_camera_cases())).all(), "registered")
    started = time.perf_counter()
    materialise_unregistered_presence(conn, values)
    counts.timings["unregistered_presence"] = round(time.perf_counter() - started, 3)
    try:
        run_rule(conn, now, counts, "unregistered_occupant", unregistered_candidates(conn, cameras=cameras),
                 values, first_close=(_registered_now(conn, "unregistered_occupant", values), "registered"))
        run_rule(conn, now, counts, "address_mismatch", mismatch_candidates(conn), values,
                 first_close=(_registered_now(conn, "address_mismatch", values), "registered"))
        run_rule(conn, now, counts, "overcrowding", overcrowding_candidates(conn, cameras=cameras), values)
    finally:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {UNREGISTERED_PRESENCE}"))
    run_rule(conn, now, counts, "unknown_credential", unknown_candidates(conn), values,
             first_close=(_known_now(conn), "registered"))
    run_rule(conn, now, counts, "credential_unused", unused_candidates(conn), values,
             first_close=(_credential_seen(), "seen_again"))
    ended = f"""SELECT c.id, c.unit_id FROM cases c JOIN registrations r ON r.id = c.registration_id
WHERE c.kind = 'presumed_departure' AND c.state IN {OPEN_STATES_SQL} AND r.status <> 'active'"""
    run_rule(conn, now, counts, "presumed_departure", departure_candidates(conn), values,
             first_close=(ended, "registration_ended"), resolution="seen_again", due=True)
    # Grid work (server/grid/case_tasks.py): closed cases noted on their
    # tasks, then a task for each new case that needs a visit.
    started = time.perf_counter()
    case_tasks.sync_closed_cases(conn, now)
    case_tasks.create_case_tasks(conn, now, rules)
    counts.timings["tasks"] = round(time.perf_counter() - started, 3)


def _known_now(conn: sa.Connection) -> str:
    # The case's evidence names the format and value (unknown_candidates), so
    # the test is one probe of the active credentials' unique index; the
    # subject is compared too, as the key the case was opened under.
    return f"""SELECT c.id, c.unit_id FROM cases c
WHERE c.kind = 'unknown_credential' AND c.state IN {OPEN_STATES_SQL} AND EXISTS (
  SELECT 1 FROM credentials k WHERE k.building_id = c.building_id AND k.revoked_at IS NULL
  AND k.format = {json_text(conn, 'c.evidence', 'format')} AND k.value = {json_text(conn, 'c.evidence', 'value')}
  AND c.subject = 'b' || CAST(k.building_id AS TEXT) || '/' || k.format || '/' || k.value)"""


def _credential_seen() -> str:
    return f"""SELECT c.id, c.unit_id FROM cases c JOIN credentials k ON k.id = c.credential_id
WHERE c.kind = 'credential_unused' AND c.state IN {OPEN_STATES_SQL} AND k.last_seen_at IS NOT NULL"""


def expire_departures(conn: sa.Connection, now: datetime, counts: RuleCounts,
                      rules: CityRules | None = None) -> None:
    """No answer by the due time: end the registration at its last evidence,
    revoke its credentials (deregister does both), give the grid's
    coordinator a task to verify (server/grid/case_tasks.departure_task;
    ``rules`` give its deadline). One row at a time, since each ending goes
    through the registry and changes allowlists; there are few per sweep."""
    from server.db.models import buildings
    from server.registry import service as registry

    due = conn.execute(
        sa.select(cases.c.id, cases.c.registration_id, cases.c.evidence_at, cases.c.building_id, cases.c.unit_id,
                  buildings.c.grid_id)
        .select_from(cases.outerjoin(buildings, buildings.c.id == cases.c.building_id))
        .where(cases.c.kind == "presumed_departure", cases.c.state.in_(("open", "acknowledged")),
               cases.c.due_at <= now).order_by(cases.c.id)).all()
    for case_id, registration_id, evidence_at, building_id, unit_id, grid_id in due:
        if not case_ops.close_cases(conn, now, ACTOR, [case_id], resolution="registration_ended"):
            continue
        outcome = registry.deregister(conn, now, ACTOR, registration_id, departed_at=min(evidence_at or now, now),
                                      reason="presumed_departure")
        counts.changes.extend(outcome.changes)
        counts.ended_registrations.append(registration_id)
        counts.add_closed("presumed_departure", 1)
        if unit_id is not None:
            counts.touched_units.add(unit_id)
        case_tasks.departure_task(conn, now, rules or CityRules(), case_id=case_id, registration_id=registration_id,
                                  evidence_at=evidence_at, unit_id=unit_id, building_id=building_id, grid_id=grid_id)
