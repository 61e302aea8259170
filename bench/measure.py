"""Pure figures from raw observations: percentiles, ack latencies, loss and
duplicate counts, process CPU. No service is touched here except the database
query in :func:`count_stored`."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from server.db.models import events


@dataclass(frozen=True)
class AckSeen:
    """An ack as the bench's listener received it (``at``: Unix seconds)."""

    at: float
    gateway_id: str
    committed: list[tuple[int, int]]


@dataclass(frozen=True)
class Integrity:
    injected: int
    stored_rows: int
    distinct: int

    @property
    def lost(self) -> int:
        return self.injected - self.distinct

    @property
    def duplicates(self) -> int:
        return self.stored_rows - self.distinct


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def first_ack_times(acks: Iterable[AckSeen]) -> dict[tuple[str, int], float]:
    """When each (gateway, seq) was first acknowledged as committed."""
    out: dict[tuple[str, int], float] = {}
    for ack in sorted(acks, key=lambda a: a.at):
        for first, last in ack.committed:
            for seq in range(first, last + 1):
                out.setdefault((ack.gateway_id, seq), ack.at)
    return out


def count_stored(engine: sa.Engine, prefix: str) -> tuple[int, int]:
    """``(rows, distinct credential values)`` of events whose value starts with ``prefix``."""
    query = sa.select(sa.func.count(), sa.func.count(sa.distinct(events.c.credential_value))).where(
        events.c.credential_value.like(prefix + "%")
    )
    with engine.connect() as conn:
        rows, distinct = conn.execute(query).one()
    return int(rows), int(distinct)


def stored_times(engine: sa.Engine, prefix: str) -> list[tuple[str, int, datetime, datetime]]:
    """``(gateway, seq, occurred_at, stored_at)`` of the events of one phase."""
    query = sa.select(events.c.gateway_id, events.c.seq, events.c.occurred_at, events.c.stored_at).where(
        events.c.credential_value.like(prefix + "%")
    )
    with engine.connect() as conn:
        return [(gw, seq, occ, sto) for gw, seq, occ, sto in conn.execute(query)]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def print_result(result: dict[str, object], *, as_json: bool) -> None:
    """The benchmark's figures on stdout: one JSON object as the last line
    with ``--json``, else one ``name: value`` line each."""
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
