"""The reconciliation folds' watermarks (rows of ``reconcile_state``): card
reads ("events", server/reconcile/evidence.py) and unit door cameras
("camera", server/reconcile/camera.py), each advanced by its own fold.

The retention purge (server/retention/purge.py) deletes no event a running
fold has not read yet, so it waits for the lowest of the watermarks that
advance under the city's rules: the camera fold runs only while
``camera_evidence_weight`` is above 0, and a watermark left behind by a fold
that was turned off must not hold every event back for ever."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from server.db.models import reconcile_state
from server.reconcile import camera, camera_rules, evidence
from server.rules import CityRules

EVERY_FOLD = (evidence.WATERMARK, camera.WATERMARK)


def advancing(rules: CityRules) -> tuple[str, ...]:
    """The watermarks the reconciler moves forward under ``rules``."""
    return EVERY_FOLD if camera_rules.enabled(rules) else (evidence.WATERMARK,)


def lowest(conn: sa.Connection, names: Sequence[str]) -> int:
    """The lowest of the named watermarks; 0 when one has no row yet (its
    fold has not run, so it has read nothing)."""
    if not names:
        raise ValueError("no watermark named")
    found = dict(conn.execute(sa.select(reconcile_state.c.name, reconcile_state.c.last_event_id)
                              .where(reconcile_state.c.name.in_(list(names)))).tuples().all())
    return min(int(found.get(name) or 0) for name in names)
