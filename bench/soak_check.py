"""The soak's verdict: what each gateway generated (its journal) against what
the database holds, read once everything has drained.

For each gateway:

- every journalled append must be stored with exactly its seqs, each seq
  holding the read the journal says (``lost`` counts reads missing or
  holding another read's value);
- an append the soak killed in flight must be stored whole or not at all;
- no ``(gateway_id, seq)`` stored twice, and no read stored twice under two
  seqs (``duplicates``);
- every seq the outbox ever handed out, from its first to its last (the
  gateway's own events too: ``gateway_started``, drops), is stored
  (``seq_holes``), unless the outbox itself reported dropping it.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from bench.soak_journal import VALUE_PREFIX, Append, parse_value, settle_in_doubt


@dataclass(frozen=True)
class OutboxMeta:
    first_seq: int
    last_seq: int
    dropped_total: int
    depth: int


def read_outbox_meta(path: Path) -> OutboxMeta:
    """From a gateway's outbox file once the gateway has stopped."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        depth = int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        db.close()
    return OutboxMeta(int(meta["first_seq"]), int(meta["last_seq"]), int(meta["dropped_total"]), depth)


@dataclass
class GatewayTally:
    gateway_id: str
    generated: int = 0  # reads the outbox committed (journalled, or in doubt and found whole)
    stored: int = 0  # of those, distinct reads found at their seq
    lost: int = 0
    duplicate_seq_rows: int = 0  # rows beyond the first for one (gateway_id, seq)
    duplicate_reads: int = 0  # rows beyond the first for one read value under other seqs
    wrong_value: int = 0  # a journalled seq holding another value
    unexpected: int = 0  # soak reads at a seq no append explains
    in_doubt_appends: int = 0
    in_doubt_committed: int = 0
    in_doubt_absent: int = 0
    seq_holes: int = 0
    outbox_left: int = 0
    outbox_dropped: int = 0

    def as_dict(self) -> dict[str, int | str]:
        return dict(self.__dict__)


def check_gateway(engine: sa.Engine, gateway_id: str, appends: list[Append], meta: OutboxMeta | None) -> GatewayTally:
    tally = GatewayTally(gateway_id)
    committed = sorted((a for a in appends if a.first_seq is not None), key=lambda a: a.first_seq or 0)
    in_doubt = [a for a in appends if a.first_seq is None]
    tally.in_doubt_appends = len(in_doubt)
    doubt_index: dict[int, list[Append]] = defaultdict(list)
    for a in sorted(in_doubt, key=lambda a: a.first_i):
        doubt_index[a.incarnation].append(a)
    starts = [a.first_seq or 0 for a in committed]
    found_doubt: dict[tuple[int, int], int] = defaultdict(int)
    params = {"gw": gateway_id}
    soak_reads = "gateway_id = :gw AND kind = 'card_read' AND credential_value LIKE :prefix"
    with engine.connect() as conn:
        rows, distinct_seqs = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT seq) FROM events WHERE gateway_id = :gw"), params).one()
        tally.duplicate_seq_rows = int(rows) - int(distinct_seqs)
        reads, distinct_reads = conn.execute(sa.text(
            f"SELECT count(*), count(DISTINCT credential_value) FROM events WHERE {soak_reads}"),
            params | {"prefix": VALUE_PREFIX + "%"}).one()
        # Two rows of one seq are counted above; only the rest are reads stored twice.
        tally.duplicate_reads = max(0, int(reads) - int(distinct_reads) - tally.duplicate_seq_rows)
        if meta is not None:
            in_range = conn.execute(sa.text(
                "SELECT count(DISTINCT seq) FROM events WHERE gateway_id = :gw AND seq BETWEEN :a AND :b"),
                params | {"a": meta.first_seq, "b": meta.last_seq}).scalar_one()
            tally.seq_holes = max(0, meta.last_seq - meta.first_seq + 1 - int(in_range) - meta.dropped_total)
            tally.outbox_left, tally.outbox_dropped = meta.depth, meta.dropped_total
        result = conn.execution_options(yield_per=20_000).execute(sa.text(
            f"SELECT seq, credential_value FROM events WHERE {soak_reads} ORDER BY seq"),
            params | {"prefix": VALUE_PREFIX + "%"})
        last_seq: int | None = None
        for seq, value in result:
            if seq == last_seq:
                continue  # a second row of one seq: counted as a duplicate above
            last_seq = seq
            at = bisect.bisect_right(starts, seq) - 1
            if at >= 0 and seq < starts[at] + committed[at].count:
                if committed[at].value_at(seq) == value:
                    tally.stored += 1
                else:
                    tally.wrong_value += 1
                continue
            parsed = parse_value(value)
            owner = _in_doubt_owner(doubt_index, parsed) if parsed is not None else None
            if owner is None:
                tally.unexpected += 1
            else:
                found_doubt[(owner.incarnation, owner.first_i)] += 1
    outcome = settle_in_doubt(in_doubt, found_doubt)
    tally.in_doubt_committed, tally.in_doubt_absent = outcome.committed, outcome.absent
    journalled = sum(a.count for a in committed)
    tally.generated = journalled + outcome.committed
    tally.stored += sum(min(found_doubt.get((a.incarnation, a.first_i), 0), a.count) for a in in_doubt)
    tally.lost = tally.generated - tally.stored
    return tally


def _in_doubt_owner(index: dict[int, list[Append]], parsed: tuple[int, int]) -> Append | None:
    inc, i = parsed
    candidates = index.get(inc)
    if not candidates:
        return None
    at = bisect.bisect_right([a.first_i for a in candidates], i) - 1
    if at >= 0 and i < candidates[at].first_i + candidates[at].count:
        return candidates[at]
    return None


def open_gaps(engine: sa.Engine) -> int:
    """Sequence gaps the server itself still holds open."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM seq_gaps WHERE state = 'open'")).scalar_one())


def dead_letters(engine: sa.Engine) -> dict[str, int]:
    """What the server set aside: every generated event is valid, so any row
    here is worth a look (``seq_jump``: a jump in a gateway's numbers it
    recorded as an anomaly)."""
    with engine.connect() as conn:
        total, jumps = conn.execute(sa.text(
            "SELECT count(*), count(*) FILTER (WHERE reason LIKE 'sequence jump%') FROM dead_letters")).one()
    return {"total": int(total), "seq_jump": int(jumps)}
