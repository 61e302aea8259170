"""The reconciliation folds' watermarks (rows of ``reconcile_state``): card
reads ("events", server/reconcile/evidence.py) and unit door cameras
("camera", server/reconcile/camera.py), each advanced by its own fold.

The retention purge (server/retention/purge.py) deletes no event a running
fold has not read yet, so it waits for the lowest of the watermarks that
advance under the city's rules: the camera fold runs only while
``camera_evidence_weight`` is above 0, and a watermark left behind by a fold
that was turned off must not hold every event back for ever.

A watermark is a (txid, id) mark, not an event id: "read" means "at or
below the mark in (txid, id) order" (server/reconcile/marks.py)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from server.db.models import reconcile_state
from server.reconcile import camera, camera_rules, evidence
from server.reconcile.marks import Mark, folded
from server.rules import CityRules

EVERY_FOLD = (evidence.WATERMARK, camera.WATERMARK)


def advancing(rules: CityRules) -> tuple[str, ...]:
    """The watermarks the reconciler moves forward under ``rules``."""
    return EVERY_FOLD if camera_rules.enabled(rules) else (evidence.WATERMARK,)


def lowest(conn: sa.Connection, names: Sequence[str]) -> Mark:
    """The lowest of the named watermarks, a (txid, id) mark
    (server/reconcile/marks.py); (0, 0) when one has no row yet (its fold
    has not run, so it has read nothing)."""
    if not names:
        raise ValueError("no watermark named")
    c = reconcile_state.c
    found = {name: Mark(int(txid or 0), int(event_id or 0)) for name, txid, event_id in conn.execute(
        sa.select(c.name, c.last_txid, c.last_event_id).where(c.name.in_(list(names))))}
    return min(found.get(name, Mark()) for name in names)


def read_by_every_fold(conn: sa.Connection, names: Sequence[str]) -> sa.ColumnElement[bool] | None:
    """The events every named fold has read (at or below the lowest of their
    marks), as a condition on ``events``; None when no fold has read any."""
    mark = lowest(conn, names)
    return None if mark == Mark() else folded(conn, mark)
