"""What became of each configuration version, from what the gateways say in
their status (stored in gateways.config_version / config_attempted /
config_state / config_error by ingest): a version the gateway runs is
applied; the newest one it received is applied, rolled back or refused as it
says; older ones still pending were superseded (the gateway only ever tries
the newest retained version). A staged rollout halts as soon as one of its
versions is rolled back or refused. Reads only the gateways' columns, so
it works whichever process stored the status."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.db.models import config_rollouts, gateway_configs, gateways

log = logging.getLogger(__name__)

FINAL_STATES = ("applied", "rolled_back", "refused")
FAILED = ("rolled_back", "refused")
PAGE = 1000


@dataclass(frozen=True)
class Recorded:
    outcomes: int
    halted_rollouts: list[int]


def _outcome_of(version: int, running: int | None, attempted: int | None, state: str | None) -> str | None:
    if attempted is not None and version == attempted and state in FINAL_STATES:
        return state
    if running is not None and version == running:
        return "applied"
    newest_seen = max(v for v in (running, attempted) if v is not None)
    if version < newest_seen and (version != attempted or state in FINAL_STATES):
        return "superseded"
    return None


def _candidates(conn: sa.Connection, after_id: int, limit: int) -> list[sa.Row[Any]]:
    """Pending versions the gateway has reached (received or passed), by
    row id from ``after_id`` (the primary key: a range, not a table scan)."""
    c, g = gateway_configs.c, gateways.c
    return list(conn.execute(
        sa.select(c.id, c.version, c.rollout_id, g.config_version, g.config_attempted, g.config_state,
                  g.config_error)
        .select_from(gateway_configs.join(gateways, g.id == c.gateway_id))
        .where(c.id > after_id, c.outcome.is_(None),
               sa.or_(g.config_attempted >= c.version, g.config_version >= c.version))
        .order_by(c.id).limit(limit)).all())


def decided(conn: sa.Connection, since_id: int = 0) -> Iterator[tuple[sa.Row[Any], str]]:
    """Each pending version with a row id above ``since_id`` that the
    gateway's status decides, with its outcome; page by page, so versions a
    gateway is still trying (``applying``) never hide the ones after them."""
    cursor = since_id
    while True:
        rows = _candidates(conn, cursor, PAGE)
        for row in rows:
            outcome = _outcome_of(row.version, row.config_version, row.config_attempted, row.config_state)
            if outcome is not None:
                yield row, outcome
        if len(rows) < PAGE:
            return
        cursor = int(rows[-1].id)


def anything_to_record(conn: sa.Connection, since_id: int = 0) -> bool:
    """A read-only look first, so the task takes no write lock for nothing."""
    return next(decided(conn, since_id), None) is not None


def record_outcomes(conn: sa.Connection, now: datetime, since_id: int = 0) -> Recorded:
    """One pass: fill in the outcome of every pending version (with a row id
    above ``since_id``) the gateways' statuses decide, and halt the staged
    rollouts that had a failure."""
    c = gateway_configs.c
    failed_rollouts: set[int] = set()
    count = 0
    for row, outcome in list(decided(conn, since_id)):
        detail = row.config_error if outcome in FAILED else None
        conn.execute(sa.update(gateway_configs).where(c.id == row.id, c.outcome.is_(None))
                     .values(outcome=outcome, outcome_at=now, outcome_detail=detail))
        count += 1
        if outcome in FAILED and row.rollout_id is not None:
            failed_rollouts.add(int(row.rollout_id))
    halted = []
    r = config_rollouts.c
    for rollout_id in sorted(failed_rollouts):
        done = conn.execute(sa.update(config_rollouts).where(r.id == rollout_id, r.state == "staged")
                            .values(state="halted", updated_at=now)).rowcount
        if done:
            halted.append(rollout_id)
            log.warning("configuration rollout %s halted: a gateway rolled back or refused its version",
                        rollout_id)
    return Recorded(count, halted)
