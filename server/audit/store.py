"""The log's rows: appending inside a caller's transaction, the head, and
checkpoints. Synchronous; the async writer (server/audit/log.py) runs these
in its thread."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from server.audit import canonical, chain
from server.audit.entries import AuditEntry
from server.audit.keys import AuditKey
from server.db.models import audit_checkpoints, audit_head, audit_log

HEAD_ID = 1


@dataclass(frozen=True)
class Head:
    size: int
    head: str


@dataclass(frozen=True)
class Checkpoint:
    size: int
    head: str
    at: datetime
    key_id: str
    signature: str

    @property
    def at_text(self) -> str:
        return canonical.rfc3339(self.at)

    def message(self) -> bytes:
        return chain.checkpoint_message(self.size, self.head, self.at_text)

    def as_json(self) -> dict[str, Any]:
        return {"size": self.size, "head": self.head, "at": self.at_text, "key_id": self.key_id,
                "signature": self.signature}


def append_in(conn: sa.Connection, entries: Sequence[AuditEntry], now: datetime | None = None, *,
              checked: bool = False) -> list[int]:
    """Appends ``entries`` in the caller's open write transaction and returns
    their seqs; they are durable when the caller commits. On SQLite the
    transaction must hold the write lock from its start (BEGIN IMMEDIATE,
    server/web/transactions.py): a deferred one that read earlier cannot
    take it later if another process wrote in between."""
    if not entries:
        return []
    # ``checked``: the group-commit writer's entries were checked when queued.
    if not checked:
        for entry in entries:
            canonical.check_entry(entry)
    start = _locked_head(conn)
    # Taken while the head is held: times follow seq order across processes
    # (as far as their clocks agree).
    now = now or datetime.now(UTC)
    at = canonical.rfc3339(now)
    head = bytes.fromhex(start.head)
    rows = []
    for offset, entry in enumerate(entries):
        seq = start.size + offset
        record = canonical.record_text(entry, seq, at)
        head = chain.chain_hash(head, record.encode("utf-8"))
        rows.append({"seq": seq, "at": now, "actor": entry.actor, "action": entry.action, "subject": entry.subject,
                     "record": record, "hash": head.hex()})
    conn.execute(audit_log.insert(), rows)
    size = start.size + len(entries)
    conn.execute(audit_head.update().where(audit_head.c.id == HEAD_ID)
                 .values(size=size, head=head.hex(), updated_at=now))
    return list(range(start.size, size))


def _locked_head(conn: sa.Connection) -> Head:
    """The head row, locked until the transaction ends (FOR UPDATE on
    PostgreSQL; SQLite's write lock already serialises). The first append
    ever creates it; ON CONFLICT makes a second process that raced to create
    it wait for the first and then lock the same row."""
    query = sa.select(audit_head.c.size, audit_head.c.head).where(audit_head.c.id == HEAD_ID).with_for_update()
    row = conn.execute(query).first()
    if row is None:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(insert(audit_head).values(id=HEAD_ID, size=0, head=chain.EMPTY_HEAD_HEX,
                                               updated_at=datetime.now(UTC)).on_conflict_do_nothing())
        row = conn.execute(query).one()
    return Head(int(row.size), str(row.head))


@contextlib.contextmanager
def snapshot(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A read-only view of the log as of one moment, for reads that must
    agree with each other (the head, the checkpoints, the records) while
    appends go on."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
            yield conn
        return
    with engine.connect() as conn:
        # pysqlite begins nothing before a SELECT: without this every query
        # would see the log as it is at that moment.
        conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            conn.rollback()


def read_head(conn: sa.Connection) -> Head | None:
    row = conn.execute(sa.select(audit_head.c.size, audit_head.c.head).where(audit_head.c.id == HEAD_ID)).first()
    return None if row is None else Head(int(row.size), str(row.head))


def latest_checkpoint(conn: sa.Connection) -> Checkpoint | None:
    """The checkpoint of the longest log, or None before the first."""
    row = conn.execute(sa.select(audit_checkpoints).order_by(audit_checkpoints.c.size.desc()).limit(1)).first()
    return None if row is None else _checkpoint(row)


def checkpoints_between(conn: sa.Connection, low: int, high: int) -> list[Checkpoint]:
    """Checkpoints with ``low <= size <= high``, smallest first."""
    rows = conn.execute(sa.select(audit_checkpoints).where(audit_checkpoints.c.size.between(low, high))
                        .order_by(audit_checkpoints.c.size))
    return [_checkpoint(row) for row in rows]


def make_checkpoint(conn: sa.Connection, key: AuditKey, now: datetime | None = None) -> Checkpoint | None:
    """Signs the current head if the log grew since the last checkpoint;
    None when there is nothing new. Two processes signing the same size at
    once keep the first (the size is the key)."""
    head = read_head(conn)
    latest = latest_checkpoint(conn)
    if head is None or head.size == 0 or (latest is not None and latest.size >= head.size):
        return None
    at = (now or datetime.now(UTC)).astimezone(UTC)
    unsigned = Checkpoint(head.size, head.head, at, key.key_id, "")
    signed = Checkpoint(head.size, head.head, at, key.key_id, key.sign(unsigned.message()))
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(audit_checkpoints).values(size=signed.size, head=signed.head, at=signed.at,
                                                  key_id=signed.key_id, signature=signed.signature)
                 .on_conflict_do_nothing())
    stored = checkpoints_between(conn, head.size, head.size)
    return stored[0] if stored else signed


def _checkpoint(row: sa.Row[Any]) -> Checkpoint:
    return Checkpoint(int(row.size), str(row.head), row.at, str(row.key_id), str(row.signature))
