"""Audit log benchmark: fill the log with N records (default 1,000,000) whose
chain and checkpoints are real, time ``verify_database`` over all of them,
then time group-committed appends from 50 concurrent tasks.

``python bench/audit.py --json [--records N] [--database-url URL]``. Without
``--database-url`` it starts a throwaway PostgreSQL from the system's
binaries (tests/services.py), with fsync ON, unlike the tests' cluster: the
append figure is about what a durable commit costs. Progress goes to stderr,
one JSON object is the last stdout line.

Figures:
- records: records in the log when it is verified;
- fill_s: generating them (canonical JSON, the real chain, a signed checkpoint
  every 10,000) and bulk-inserting them, COPY on PostgreSQL;
- audit_verify_s: ``verify_database``: every hash recomputed from the stored
  text, every checkpoint signature, the head row; verify_records_per_s;
- append_per_s: ``AuditLog.append`` calls completed per second, one entry
  each, from ``--tasks`` (50) concurrent tasks: group commit;
  append_ms_p50/p99: one call, enqueue to committed; append_commits: the
  transactions they took;
- single_commit_append_per_s: the same tasks, every append its own
  transaction (``append_in`` and a commit, in threads): what grouping saves.

``measure(url, records=..., tasks=...)`` returns the same figures for other
benchmarks (bench/police.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.measure import percentile, print_result
from rentgate import signing
from server.audit import canonical, chain
from server.audit.entries import AuditEntry
from server.audit.keys import AuditKey, from_private
from server.audit.log import AuditLog
from server.audit.store import Checkpoint, append_in
from server.audit.verify import verify_database
from server.db import migrate
from server.db.engine import create_engine
from server.db.models import audit_checkpoints, audit_head, audit_log
from server.web.transactions import write_transaction

log = logging.getLogger("bench.audit")
CHECKPOINT_EVERY = 10_000
FILL_CHUNK = 50_000
ACTIONS = ("police.person_check", "police.person_check", "police.person_check", "police.batch", "pii.view",
           "police.watch")


def progress(text: str, *args: object) -> None:
    print(f"[bench] {text % args}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    p.add_argument("--records", type=int, default=1_000_000, help="records filled before verifying")
    p.add_argument("--database-url", help="an empty, migrated or not, database (default: a throwaway PostgreSQL)")
    p.add_argument("--tasks", type=int, default=50, help="concurrent appending tasks")
    p.add_argument("--appends", type=int, default=5_000, help="appends timed (one entry each)")
    return p.parse_args(argv)


# ---------------------------------------------------------------- a durable PostgreSQL


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    from tests.services import PostgresCluster

    class DurablePostgres(PostgresCluster):
        """The tests' cluster turns every flush off; a commit's cost is
        what group commit is about, so this one keeps them."""

        def _spawn(self, cmd: list[str], stdout: IO[bytes]) -> Any:
            durable = {"fsync=off": "fsync=on", "synchronous_commit=off": "synchronous_commit=on",
                       "full_page_writes=off": "full_page_writes=on"}
            return super()._spawn([durable.get(arg, arg) for arg in cmd], stdout)

    cluster = DurablePostgres()
    try:
        cluster.start()
        yield cluster.url(cluster.create_database("bench"))
    finally:
        cluster.destroy()


# ---------------------------------------------------------------- filling


def synthetic_entry(n: int) -> AuditEntry:
    action = ACTIONS[n % len(ACTIONS)]
    police = action.startswith("police.")
    return AuditEntry(actor=f"client:c-{n % 40:04d}" if police else f"user:{n % 300}", action=action,
                      subject=f"id:{(n * 2654435761) % 2**64:016x}{n:016x}", status=200,
                      purpose={"code": "investigation", "legal_basis": "公安机关办理刑事案件程序规定",
                               "case_ref": f"A-2026-{n % 9973:05d}"} if police else None,
                      size=1 + n % 3, detail={"lines": 1 + n % 3} if action == "police.batch" else {})


def fill(engine: sa.Engine, records: int, key: AuditKey, *, end: datetime | None = None) -> None:
    """``records`` records spread over the 30 days before ``end``, chained as
    append_in chains them, with a signed checkpoint every CHECKPOINT_EVERY
    and at the end, and the head row."""
    end = end or datetime.now(UTC)
    step = timedelta(days=30) / max(records, 1)
    start = end - timedelta(days=30)
    head = chain.EMPTY_HEAD
    checkpoints: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for low in range(0, records, FILL_CHUNK):
            rows = []
            for seq in range(low, min(records, low + FILL_CHUNK)):
                entry = synthetic_entry(seq)
                at = start + step * seq
                record = canonical.record_text(entry, seq, canonical.rfc3339(at))
                head = chain.chain_hash(head, record.encode("utf-8"))
                rows.append((seq, at, entry.actor, entry.action, entry.subject, record, head.hex()))
                if (seq + 1) % CHECKPOINT_EVERY == 0 or seq + 1 == records:
                    checkpoints.append(_signed(key, seq + 1, head.hex(), at + timedelta(seconds=1)))
            _insert(conn, rows)
            progress("filled %s of %s records", min(records, low + FILL_CHUNK), records)
        if checkpoints:
            conn.execute(audit_checkpoints.insert(), checkpoints)
        conn.execute(audit_head.insert().values(id=1, size=records, head=head.hex(), updated_at=end))


def _signed(key: AuditKey, size: int, head: str, at: datetime) -> dict[str, Any]:
    cp = Checkpoint(size, head, at, key.key_id, "")
    return {"size": size, "head": head, "at": at, "key_id": key.key_id, "signature": key.sign(cp.message())}


def _insert(conn: sa.Connection, rows: list[tuple[int, datetime, str, str, str | None, str, str]]) -> None:
    if conn.dialect.name != "postgresql":
        names = ("seq", "at", "actor", "action", "subject", "record", "hash")
        conn.execute(audit_log.insert(), [dict(zip(names, row, strict=True)) for row in rows])
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy("COPY audit_log (seq, at, actor, action, subject, record, hash) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


# ---------------------------------------------------------------- measuring


def time_verify(engine: sa.Engine, key: AuditKey) -> tuple[float, int]:
    started = time.perf_counter()
    report = verify_database(engine, {key.key_id: key.public_key})
    seconds = time.perf_counter() - started
    if not report.ok:
        raise RuntimeError(f"verification failed: {report.problem}")
    return seconds, report.records


async def append_rate(engine: sa.Engine, *, tasks: int, appends: int) -> dict[str, Any]:
    """Group-committed appends: ``tasks`` tasks, ``appends`` calls in all."""
    audit = AuditLog(engine)
    audit.start()
    latencies: list[float] = []
    left = iter(range(appends))

    async def worker() -> None:
        for n in left:
            started = time.perf_counter()
            await audit.append(synthetic_entry(n))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(tasks)))
        seconds = time.perf_counter() - started
    finally:
        await audit.stop()
    ms = [v * 1000 for v in latencies]
    return {"append_per_s": round(appends / seconds, 1), "append_ms_p50": round(percentile(ms, 50) or 0, 2),
            "append_ms_p99": round(percentile(ms, 99) or 0, 2), "append_commits": audit.commits}


async def single_commit_rate(engine: sa.Engine, *, tasks: int, appends: int) -> float:
    """The same without grouping: every append its own transaction."""
    left = iter(range(appends))

    def one(n: int) -> None:
        with write_transaction(engine) as conn:
            append_in(conn, [synthetic_entry(n)])

    async def worker() -> None:
        for n in left:
            await asyncio.to_thread(one, n)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return round(appends / (time.perf_counter() - started), 1)


def measure(url: str, *, records: int = 1_000_000, tasks: int = 50, appends: int = 5_000) -> dict[str, Any]:
    """Fill, verify, append; the figures as a dict. ``url``: an empty database."""
    engine = create_engine(url, pool_size=max(5, tasks), max_overflow=10)
    try:
        migrate.upgrade(engine)
        key = from_private(signing.generate_private_key())
        started = time.perf_counter()
        fill(engine, records, key)
        out: dict[str, Any] = {"records": records, "fill_s": round(time.perf_counter() - started, 2)}
        progress("filled %s records in %.1fs", records, out["fill_s"])
        seconds, verified = time_verify(engine, key)
        out |= {"audit_verify_s": round(seconds, 3), "verify_records_per_s": round(verified / seconds)}
        progress("verified %s records in %.2fs", verified, seconds)
        out |= asyncio.run(append_rate(engine, tasks=tasks, appends=appends))
        progress("group-committed appends: %s/s", out["append_per_s"])
        out["single_commit_append_per_s"] = asyncio.run(single_commit_rate(engine, tasks=tasks,
                                                                           appends=max(200, appends // 5)))
        progress("one commit per append: %s/s", out["single_commit_append_per_s"])
        out["tasks"] = tasks
        out["database"] = engine.dialect.name
    finally:
        engine.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with database(args.database_url) as url:
            result = measure(url, records=args.records, tasks=args.tasks, appends=args.appends)
    except Exception as exc:  # noqa: BLE001 - a bench reports its failure as JSON too
        log.exception("bench failed")
        if args.json:
            print(json.dumps({"error": str(exc)}))
        return 1
    result |= {"python": platform.python_version(), "sqlalchemy": sa.__version__, "cpus": os.cpu_count(),
               "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    print_result(result, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
