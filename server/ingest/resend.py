"""Which open sequence gaps to ask the gateways for again, and when.

A gap is first requested ``delay`` after it was seen (the missing events are
usually just late), then with doubling intervals up to a cap. It is never
closed here: a gap nobody fills stays open and visible in the API. Each
ingest worker runs the ledger; claiming locks the rows it takes, so two
workers never ask for the same gap in the same round.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import sqlalchemy as sa

from rentgate.wire import SeqRange
from server.db.models import seq_gaps

MAX_RANGES_PER_REQUEST = 100


def next_request_due(detected_at: datetime, last_requested_at: datetime | None, request_count: int, *,
                     delay_s: float, max_interval_s: float) -> datetime:
    if last_requested_at is None:
        return detected_at + timedelta(seconds=delay_s)
    interval = min(max_interval_s, delay_s * 2 ** min(request_count, 30))
    return last_requested_at + timedelta(seconds=interval)


class GapLedger:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def claim_due(self, now: datetime, *, delay_s: float, max_interval_s: float,
                  limit: int = 1000) -> dict[str, list[SeqRange]]:
        """Open gaps due for a resend request, per gateway; marks them requested."""
        due: defaultdict[str, list[SeqRange]] = defaultdict(list)
        claimed: list[int] = []
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(seq_gaps.c.id, seq_gaps.c.gateway_id, seq_gaps.c.first_seq, seq_gaps.c.last_seq,
                          seq_gaps.c.detected_at, seq_gaps.c.last_requested_at, seq_gaps.c.request_count)
                .where(seq_gaps.c.state == "open",
                       seq_gaps.c.detected_at <= now - timedelta(seconds=delay_s))
                .order_by(seq_gaps.c.gateway_id, seq_gaps.c.first_seq)
                .limit(limit)
                # Several ingest workers run this at once (docs/scaling.md):
                # a gap one of them is claiming is skipped by the others, so
                # each request goes out once. SQLite (one process) ignores it.
                .with_for_update(skip_locked=True)
            ).all()
            for gap_id, gw, first, last, detected, requested, count in rows:
                when = next_request_due(detected, requested, count, delay_s=delay_s, max_interval_s=max_interval_s)
                if when <= now and len(due[gw]) < MAX_RANGES_PER_REQUEST:
                    due[gw].append((first, last))
                    claimed.append(gap_id)
            if claimed:
                conn.execute(
                    seq_gaps.update().where(seq_gaps.c.id.in_(claimed))
                    .values(last_requested_at=now, request_count=seq_gaps.c.request_count + 1)
                )
        return {gw: ranges for gw, ranges in due.items() if ranges}

    def count_open(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(seq_gaps).where(seq_gaps.c.state == "open")
            ).scalar_one())
