"""What unit door cameras add to the sweep's rules (server/reconcile/sweep.py),
as SQL fragments over ``camera_days`` (server/reconcile/camera.py) in the
sweep's set-based style. docs/reconcile.md, "Camera evidence".

- Unregistered occupant: a unit whose camera saw entries without a grant of
  their own (unidentified or tailgating) on at least ``camera_min_days``
  days (each counting ``camera_evidence_weight`` of a day) within the
  silence period, the first of them before the registration deadline, all of
  them after the newest active registration at the unit was made, while no
  registered occupant of the unit lacks an active card (who would explain
  them) and no card evidence already points at an unregistered person there
  (that person's own case is the one to open: no duplicate per unit).
- Overcrowding: occupants are the larger of registrations plus unregistered
  presence and the camera's estimate: the median of the unit's nightly peaks
  over the last ``camera_window_days`` camera days (but never a peak seen on
  fewer than ``camera_min_days`` nights), scaled by the weight.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.reconcile.camera import camera_day
from server.reconcile.sqlbits import OPEN_STATES_SQL, greatest, json_object
from server.rules import CityRules

CAMERA_SUBJECT_SUFFIX = "/camera"


def enabled(rules: CityRules) -> bool:
    return rules.camera_evidence_weight > 0


def params(rules: CityRules, now: datetime) -> dict[str, Any]:
    zone, hour = rules.zone, rules.camera_day_start_hour
    return {"cam_from_day": camera_day(now - timedelta(days=rules.silence_days), zone, hour),
            "cam_recent_day": camera_day(now - timedelta(days=rules.camera_window_days), zone, hour),
            "cam_min_days": rules.camera_min_days,
            # Per mille, so that scaling is integer arithmetic on both
            # databases (PostgreSQL rounds a cast to integer, SQLite truncates).
            "cam_weight_pm": round(rules.camera_evidence_weight * 1000)}


def camera_subject(unit: str) -> str:
    return f"'u' || CAST({unit} AS TEXT) || '{CAMERA_SUBJECT_SUFFIX}'"


def unregistered_candidates(conn: sa.Connection, unregistered_presence: str) -> str:
    """Camera candidates for unregistered_occupant; ``unregistered_presence``
    is the sweep's table of presence rows that say an unregistered person
    lives at their unit (server/reconcile/sweep.py, UNREGISTERED_PRESENCE)."""
    evidence = json_object(conn, {"source": "'camera'", "days": "x.days", "entries": "x.entries",
                                  "tailgating": "x.tailgating", "first_seen": "x.first_at",
                                  "last_seen": "x.last_at"})
    return f"""
SELECT {camera_subject('x.unit_id')} AS subject, x.building_id, x.unit_id, CAST(NULL AS BIGINT) AS person_id,
       CAST(NULL AS BIGINT) AS registration_id, CAST(NULL AS BIGINT) AS credential_id, x.first_at AS evidence_at,
       {evidence} AS evidence
FROM (SELECT cd.unit_id, MIN(cd.building_id) AS building_id, COUNT(*) AS days,
             SUM(cd.unidentified) AS entries, SUM(cd.tailgating) AS tailgating,
             MIN(cd.first_at) AS first_at, MAX(cd.last_at) AS last_at
      FROM camera_days cd
      LEFT JOIN (SELECT r.unit_id, MAX(COALESCE(r.confirmed_at, r.created_at)) AS since FROM registrations r
                 WHERE r.status = 'active' AND r.unit_id IS NOT NULL GROUP BY r.unit_id) reg
        ON reg.unit_id = cd.unit_id
      WHERE cd.day >= :cam_from_day AND cd.unidentified + cd.tailgating > 0
        AND (reg.since IS NULL OR cd.first_at > reg.since)
      GROUP BY cd.unit_id) x
WHERE x.days * :cam_weight_pm >= :cam_min_days * 1000 AND x.first_at <= :deadline
  AND NOT EXISTS (SELECT 1 FROM registrations r WHERE r.unit_id = x.unit_id AND r.status = 'active'
      AND NOT EXISTS (SELECT 1 FROM credentials k WHERE k.revoked_at IS NULL
          AND (k.registration_id = r.id OR (k.person_id = r.person_id AND k.unit_id = r.unit_id))))
  AND NOT EXISTS (SELECT 1 FROM {unregistered_presence} p WHERE p.unit_id = x.unit_id)"""


def occupancy_estimates(conn: sa.Connection) -> str:
    """(unit_id, n): the camera's occupancy estimate of each unit that has
    one, already scaled by the weight."""
    pick = greatest(conn, ":cam_min_days", "(r.nights + 1) / 2")
    return f"""
SELECT r.unit_id, (r.peak * :cam_weight_pm) / 1000 AS n
FROM (SELECT cd.unit_id, cd.peak,
             ROW_NUMBER() OVER (PARTITION BY cd.unit_id ORDER BY cd.peak DESC) AS rn,
             COUNT(*) OVER (PARTITION BY cd.unit_id) AS nights
      FROM camera_days cd WHERE cd.day >= :cam_recent_day) r
WHERE r.nights >= :cam_min_days AND r.rn = {pick}"""


def registered_camera_cases() -> str:
    """Open camera cases of units where someone was registered after the
    case opened: closed as "registered" (the rule would clear them anyway,
    this says why)."""
    return f"""
SELECT c.id, c.unit_id FROM cases c
WHERE c.kind = 'unregistered_occupant' AND c.state IN {OPEN_STATES_SQL}
  AND c.person_id IS NULL AND c.credential_id IS NULL AND c.subject = {camera_subject('c.unit_id')}
  AND EXISTS (SELECT 1 FROM registrations r WHERE r.unit_id = c.unit_id AND r.status = 'active'
      AND COALESCE(r.confirmed_at, r.created_at) > c.opened_at)"""
