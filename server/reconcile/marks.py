"""How far a reconciliation fold has read the events table, correct with
several ingest processes committing at once (docs/reconcile.md, "The
watermark").

A fold's mark is a pair (txid, id) in ``reconcile_state`` (last_txid,
last_event_id): the fold has read every event at or below it in (txid, id)
order, and no event can ever appear there later.

* **PostgreSQL.** Ingest writes each event with ``txid``, the id of the
  transaction that stores it (``pg_current_xact_id()``, one value per batch;
  the column's default gives the same to any other insert). Ids come from a
  sequence when a row is inserted, but rows become visible when their
  transaction commits, so a transaction holding lower ids can commit after
  one holding higher ids: an id watermark would step over its events for
  ever. A chunk therefore reads only events whose txid is below the
  *horizon*, ``pg_snapshot_xmin(pg_current_snapshot())``: every
  transaction below it has ended, committed or rolled back, and transaction
  ids are handed out in increasing order, so no event can appear below it
  again. Between the mark and the horizon, events are read in (txid, id)
  order, which an index on (txid, id) serves as a plain range scan.
* **SQLite.** One writer at a time, and a new row's id is the highest plus
  one, so id order is commit order: ``txid`` is NULL, the mark's txid stays
  0 and the fold reads by id, as before.

Rows that existed before migration 0010 have txid 0 and the marks then
became (0, their old id): every one of those rows was committed, so they
lie below any horizon and nothing already read is read again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from server.db.models import events, reconcile_state
from server.reconcile.sqlbits import is_postgres, ts

# Events a lag figure counts at most: counting a backlog of millions for a
# gauge would cost more than the fold itself.
LAG_CAP = 1_000_000


@dataclass(frozen=True, order=True)
class Mark:
    """A position in (txid, id) order; SQLite's txid is always 0."""

    txid: int = 0
    id: int = 0


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The horizon: the transaction id below which every transaction has ended.
# xid8 has no cast to bigint; its text is the number (64 bits with the
# epoch: it never wraps).
HORIZON = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
# The last event below the horizon in (txid, id) order: one step down the
# (txid, id) index (the horizon is computed once, as the scan's bound).
_NEWEST_PG = sa.text(f"SELECT txid, id FROM events WHERE txid IS NOT NULL AND txid < {HORIZON} "
                     "ORDER BY txid DESC, id DESC LIMIT 1")


def generic_plans(conn: sa.Connection) -> None:
    """For the rest of the caller's transaction (PostgreSQL), plan each
    prepared statement once. The keyset statements below cannot prune the
    daily partitions of ``events`` (they bound txid and id, not time), so a
    custom plan re-plans every partition at every call: 4-7 ms each with 60
    partitions, most of a one-read catch-up. psycopg prepares a statement
    after its fifth run on a connection; a generic plan then costs only the
    executor's start-up."""
    if is_postgres(conn):
        # No JIT either: a generic plan's estimates are guesses that can pass
        # jit_above_cost, and compiling took 0.3 s for a statement of 1 ms.
        conn.exec_driver_sql("SELECT set_config('plan_cache_mode', 'force_generic_plan', true), "
                             "set_config('jit', 'off', true)")


def read_mark(conn: sa.Connection, name: str, *, lock: bool) -> Mark:
    """The mark of the fold called ``name``, (0, 0) for one that has not run
    (its row is made then). ``lock``: hold its row until the transaction ends
    (PostgreSQL), so that two reconcilers never fold the same chunk."""
    c = reconcile_state.c
    query = sa.select(c.last_txid, c.last_event_id).where(c.name == name)
    if lock and is_postgres(conn):
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        conn.execute(sa.text("INSERT INTO reconcile_state (name, last_txid, last_event_id, updated_at) "
                             "VALUES (:n, 0, 0, :t) ON CONFLICT (name) DO NOTHING").bindparams(ts("t")),
                     {"n": name, "t": _EPOCH})
        row = conn.execute(query).one()
    return Mark(int(row[0]), int(row[1]))


def write_mark(conn: sa.Connection, name: str, mark: Mark, now: datetime | None = None) -> None:
    values: dict[str, Any] = {"last_txid": mark.txid, "last_event_id": mark.id}
    if now is not None:
        values["updated_at"] = now
    conn.execute(sa.update(reconcile_state).where(reconcile_state.c.name == name).values(**values))


def newest(conn: sa.Connection) -> Mark | None:
    """The highest mark a fold may move to now: the last event that no
    event can ever come before (PostgreSQL: below the horizon; SQLite: the
    newest). None when there is no such event."""
    if is_postgres(conn):
        row = conn.execute(_NEWEST_PG).first()
        return None if row is None else Mark(int(row[0]), int(row[1]))
    top = conn.execute(sa.select(sa.func.max(events.c.id))).scalar()
    return None if top is None else Mark(0, int(top))


def step_ahead(conn: sa.Connection, after: Mark, upto: Mark, span: int) -> Mark:
    """The mark ``span`` events after ``after``, at most ``upto``: bounds a
    chunk's range by events, whatever kinds it holds."""
    if is_postgres(conn):
        row = conn.execute(sa.text(
            f"SELECT txid, id FROM events e WHERE {keyset_range(conn, 'e')} ORDER BY txid, id "
            "OFFSET :skip LIMIT 1"), {**range_params(after, upto), "skip": span - 1}).first()
        return upto if row is None else Mark(int(row[0]), int(row[1]))
    return Mark(0, min(upto.id, after.id + span))


def keyset_range(conn: sa.Connection, alias: str) -> str:
    """SQL for "after :after, at or below :upto" on events aliased ``alias``
    (parameters: range_params)."""
    e = alias
    if is_postgres(conn):
        # Row comparisons are both bounds of one scan of the (txid, id)
        # index; IS NOT NULL lets the planner use it (it is partial).
        return (f"{e}.txid IS NOT NULL AND ({e}.txid, {e}.id) > (:after_txid, :after_id) "
                f"AND ({e}.txid, {e}.id) <= (:upto_txid, :upto_id)")
    return f"{e}.id > :after_id AND {e}.id <= :upto_id"


def keyset_order(conn: sa.Connection, alias: str) -> str:
    return f"{alias}.txid, {alias}.id" if is_postgres(conn) else f"{alias}.id"


def range_params(after: Mark, upto: Mark) -> dict[str, int]:
    return {"after_txid": after.txid, "after_id": after.id, "upto_txid": upto.txid, "upto_id": upto.id}


def folded(conn: sa.Connection, mark: Mark) -> sa.ColumnElement[bool]:
    """Events at or below ``mark``: read by a fold whose mark it is."""
    e = events.c
    if is_postgres(conn):
        bound = sa.tuple_(sa.literal(mark.txid, sa.BigInteger), sa.literal(mark.id, sa.BigInteger))
        return sa.and_(e.txid.is_not(None), sa.tuple_(e.txid, e.id) <= bound)
    return e.id <= mark.id


def mark_of_event(conn: sa.Connection, event_id: int) -> Mark:
    """The mark of a fold that has read up to ``event_id`` in a database
    filled by one writer after another (benchmarks, tests): that event's
    (txid, id)."""
    txid = conn.execute(sa.select(events.c.txid).where(events.c.id == event_id)).scalar()
    return Mark(int(txid or 0), event_id)


def lag(conn: sa.Connection, mark: Mark, *, cap: int = LAG_CAP) -> int:
    """Stored events after ``mark`` (at most ``cap``)."""
    if is_postgres(conn):
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT 1 FROM events WHERE txid IS NOT NULL "
            "AND (txid, id) > (:t, :i) LIMIT :cap) ahead"), {"t": mark.txid, "i": mark.id, "cap": cap}
        ).scalar_one())
    top = conn.execute(sa.select(sa.func.max(events.c.id))).scalar() or 0
    return max(0, int(top) - mark.id)
