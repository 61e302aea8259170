"""The durable outbox: every event is committed here before anything else
happens to it, and leaves only when the server has acknowledged it.

SQLite in WAL mode; ``synchronous=FULL`` syncs the WAL at every commit, so a
commit that returned survives a power cut. Sequence numbers come from a
counter in the ``meta`` table, updated in the same transaction as the rows, so
they survive restarts and are never reused after deletes.

The class is synchronous and guarded by a lock; the gateway drives it from one
worker thread (``gateway.writer``) so that fsyncs never block the event loop.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.errors import OutboxClosedError, OutboxError, OutboxLockedError
from rentgate import wire

log = logging.getLogger(__name__)

EventMaker = Callable[[int], wire.Event]
"""Builds an event once the outbox has chosen its sequence number."""

MAX_SOURCE_KEY = 200
_SOURCES_KEPT = 500_000  # keys kept at most (newest), whatever their age


@dataclass(frozen=True)
class Sourced:
    """An event maker for an event its device identifies itself (terminal,
    serial number, time): the outbox stores it once under ``key``, however many
    times and by whichever path it arrives. The key must say nothing personal
    (no card or person numbers): it stays on disk after the event is sent."""

    make: EventMaker
    key: str
    # How long the key is kept after the event is stored (None: the outbox's
    # age bound); shorter for identities that say more about a person.
    keep_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 < len(self.key) <= MAX_SOURCE_KEY:
            raise ValueError(f"source key of {len(self.key)} characters (1..{MAX_SOURCE_KEY})")

    def __call__(self, seq: int) -> wire.Event:
        return self.make(seq)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    created REAL NOT NULL,  -- wall-clock seconds, for the age bound across restarts
    json TEXT NOT NULL      -- encoded once, sent as is
);
-- Events a device numbers itself (a terminal's serial and time): the key (a
-- keyed digest of the device's identity for the event, meta source_salt) is
-- kept after the event is sent, so that the same event delivered again (a
-- terminal re-posting, the catch-up fetching what a push already brought)
-- is stored once. Each key goes at keep_until, rounded up to the hour: no
-- column says when the event was, nor which event it was.
CREATE TABLE IF NOT EXISTS sources (
    key TEXT PRIMARY KEY,
    keep_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sources_keep_until ON sources (keep_until);
"""
_SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class DropReport:
    """Unsent events the bounds deleted; ``event_seq`` is the EventsDropped that says so."""

    first_seq: int
    last_seq: int
    count: int
    reason: Literal["outbox_full", "outbox_expired"]
    event_seq: int


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    oldest_age_s: float | None
    max_seq: int
    dropped_total: int
    rejected_total: int


class Outbox:
    def __init__(
        self,
        path: str | Path,
        *,
        gateway_id: str,
        max_events: int = 1_000_000,
        max_age_s: float = 30 * 86400,
        synchronous: Literal["full", "normal"] = "full",
        clock: Callable[[], float] = time.time,
        first_seq: int = 1,
    ) -> None:
        """``first_seq`` numbers the first event of a NEW outbox file; an
        existing file keeps counting where it was (see ``new_outbox_first_seq``)."""
        if not wire.is_gateway_id(gateway_id):
            raise OutboxError(str(path), f"invalid gateway id {gateway_id!r}")
        self.path = Path(path)
        self.gateway_id = gateway_id
        self.max_events = max_events
        self.max_age_s = max_age_s
        self._clock = clock
        self._first_seq_if_new = first_seq
        self._mutex = threading.Lock()
        self._drops: list[DropReport] = []
        self.repeats = 0  # Sourced events delivered again and not stored, since open
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(self.path)
        try:
            self._db: sqlite3.Connection | None = self._connect(synchronous)
            self._load()
        except BaseException:
            os.close(self._lock_fd)
            raise

    # ------------------------------------------------------------------ open / close

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise OutboxError(str(self.path), f"cannot open: {exc}") from exc
        return db

    def _load(self) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if "outbox_id" not in meta:
                meta = {
                    "schema": _SCHEMA_VERSION,
                    "outbox_id": str(uuid.uuid4()),
                    "first_seq": str(self._first_seq_if_new),
                    "last_seq": str(self._first_seq_if_new - 1),
                    "dropped_total": "0",
                    "rejected_total": "0",
                }
                db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            if "source_salt" not in meta:  # a new outbox, or one from before source keys
                meta["source_salt"] = secrets.token_hex(32)
                db.execute("INSERT INTO meta VALUES ('source_salt', ?)", (meta["source_salt"],))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if meta.get("schema") != _SCHEMA_VERSION:
            raise OutboxError(str(self.path), f"unknown outbox schema {meta.get('schema')!r}")
        self.outbox_id: str = meta["outbox_id"]
        self._source_salt = bytes.fromhex(meta["source_salt"])
        self._last_seq = int(meta["last_seq"])
        self.first_seq = int(meta.get("first_seq", "1"))
        self.dropped_total = int(meta["dropped_total"])
        self.rejected_total = int(meta["rejected_total"])
        self._depth: int = db.execute("SELECT count(*) FROM events").fetchone()[0]

    def close(self) -> None:
        with self._mutex:
            if self._db is None:
                return
            self._db.close()
            self._db = None
            os.close(self._lock_fd)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxClosedError(str(self.path), "closed")
        return self._db

    # ------------------------------------------------------------------ writing

    @property
    def max_seq(self) -> int:
        """The last sequence number handed out (it may have been deleted since)."""
        return self._last_seq

    def depth(self) -> int:
        return self._depth

    def append(self, makers: Sequence[EventMaker]) -> list[int]:
        """Number, encode and commit the events in one transaction; returns their
        seqs once the commit is on disk. Enforces ``max_events`` in the same
        transaction. If a maker raises, nothing is written. A :class:`Sourced`
        event stored before is skipped and has no seq in the answer."""
        return [seq for seq in self.append_each(makers) if seq is not None]

    def append_each(self, makers: Sequence[EventMaker]) -> list[int | None]:
        """As :meth:`append`, one answer per maker: its seq, or None for a
        :class:`Sourced` event that was stored before (under an earlier seq)."""
        if not makers:
            return []
        with self._mutex:
            db = self._conn()
            now = self._clock()
            keyed = {id(make): self._digest(make.key) for make in makers if isinstance(make, Sourced)}
            known = self._known_sources(db, list(keyed.values())) if keyed else set()
            seqs: list[int | None] = []
            rows: list[tuple[int, float, str]] = []
            sources: list[tuple[str, float]] = []
            seq = self._last_seq
            for make in makers:
                if isinstance(make, Sourced):
                    key = keyed[id(make)]
                    if key in known:
                        seqs.append(None)
                        self.repeats += 1
                        continue
                    known.add(key)  # twice in one batch: the first counts
                    keep = self.max_age_s if make.keep_s is None else min(make.keep_s, self.max_age_s)
                    sources.append((key, math.ceil((now + keep) / 3600) * 3600.0))
                seq += 1
                rows.append((seq, now, _encode(make, seq)))
                seqs.append(seq)
            if not rows:
                return seqs
            with self._transaction(db):
                db.executemany("INSERT INTO events (seq, created, json) VALUES (?, ?, ?)", rows)
                if sources:
                    db.executemany("INSERT INTO sources (key, keep_until) VALUES (?, ?)", sources)
                self._set_last_seq(db, seq)
                self._depth += len(rows)
                excess = self._depth - self.max_events
                if excess > 0:
                    # +1: room for the EventsDropped that reports the loss.
                    self._drop_oldest(db, excess + 1, "outbox_full", now)
            return seqs

    def _known_sources(self, db: sqlite3.Connection, keys: list[str]) -> set[str]:
        known: set[str] = set()
        for at in range(0, len(keys), 500):  # under SQLite's bound on parameters
            chunk = keys[at:at + 500]
            marks = ",".join("?" * len(chunk))
            known.update(k for (k,) in db.execute(f"SELECT key FROM sources WHERE key IN ({marks})",  # noqa: S608
                                                  chunk))
        return known

    def _digest(self, key: str) -> str:
        # Keyed with this outbox's own salt: the table cannot be matched
        # against precomputed identities, nor across gateways.
        return hmac.new(self._source_salt, key.encode(), hashlib.sha256).hexdigest()[:40]

    def forget_sources(self) -> int:
        """Drop source keys past their time, and the oldest beyond the count
        bound (an event that old delivered again is stored again; the server
        still has the first)."""
        with self._mutex:
            db = self._conn()
            with self._transaction(db):
                n = db.execute("DELETE FROM sources WHERE keep_until < ?", (self._clock(),)).rowcount
                n += db.execute("DELETE FROM sources WHERE rowid IN (SELECT rowid FROM sources ORDER BY keep_until "
                                "DESC LIMIT -1 OFFSET ?)", (_SOURCES_KEPT,)).rowcount
            return n

    def enforce_age(self) -> DropReport | None:
        """Delete events older than ``max_age_s`` (and everything before them, so
        the loss is one exact seq range) and report it with an EventsDropped."""
        with self._mutex:
            db = self._conn()
            now = self._clock()
            row = db.execute("SELECT max(seq) FROM events WHERE created < ?", (now - self.max_age_s,)).fetchone()
            if row[0] is None:
                return None
            with self._transaction(db):
                count = db.execute("SELECT count(*) FROM events WHERE seq <= ?", (row[0],)).fetchone()[0]
                return self._drop_oldest(db, count, "outbox_expired", now)

    def _drop_oldest(self, db: sqlite3.Connection, n: int, reason: Literal["outbox_full", "outbox_expired"],
                     now: float) -> DropReport:
        first, last = db.execute(
            "SELECT min(seq), max(seq) FROM (SELECT seq FROM events ORDER BY seq LIMIT ?)", (n,)
        ).fetchone()
        count = db.execute("DELETE FROM events WHERE seq <= ?", (last,)).rowcount
        self._depth -= count
        self.dropped_total += count
        seq = self._last_seq + 1
        dropped = wire.EventsDropped(
            gw=self.gateway_id, seq=seq, device=self.gateway_id, ts=wire.utcnow(),
            first_seq=first, last_seq=last, count=count, reason=reason,
        )
        db.execute("INSERT INTO events (seq, created, json) VALUES (?, ?, ?)", (seq, now, wire.encode_event(dropped)))
        self._depth += 1
        self._set_last_seq(db, seq)
        db.execute("UPDATE meta SET value = ? WHERE key = 'dropped_total'", (str(self.dropped_total),))
        report = DropReport(first, last, count, reason, seq)
        self._drops.append(report)
        log.error("outbox %s: dropped %d unsent events, seq %d..%d (%s)", self.path, count, first, last, reason)
        return report

    def take_drops(self) -> list[DropReport]:
        """Drops since the last call (the sender forgets those seqs)."""
        with self._mutex:
            drops, self._drops = self._drops, []
            return drops

    def delete_ranges(self, ranges: Iterable[wire.SeqRange]) -> int:
        return self.acknowledge(ranges, ())[0]

    def acknowledge(self, committed: Iterable[wire.SeqRange], rejected: Iterable[wire.SeqRange]) -> tuple[int, int]:
        """Delete what the server committed or rejected, in one transaction;
        returns how many rows of each were deleted."""
        committed, rejected = list(committed), list(rejected)
        with self._mutex:
            db = self._conn()
            with self._transaction(db):
                n_committed = self._delete(db, committed)
                n_rejected = self._delete(db, rejected)
                if n_rejected:
                    self.rejected_total += n_rejected
                    db.execute("UPDATE meta SET value = ? WHERE key = 'rejected_total'", (str(self.rejected_total),))
            return n_committed, n_rejected

    def _delete(self, db: sqlite3.Connection, ranges: list[wire.SeqRange]) -> int:
        if not ranges:
            return 0
        n = db.executemany("DELETE FROM events WHERE seq BETWEEN ? AND ?", ranges).rowcount
        self._depth -= n
        return n

    # ------------------------------------------------------------------ reading

    def pending(self, after_seq: int, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` stored events with seq > ``after_seq``, in seq order."""
        with self._mutex:
            rows = self._conn().execute(
                "SELECT seq, json FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            ).fetchall()
        return rows

    def select(self, ranges: Iterable[wire.SeqRange], limit: int = 1_000_000) -> list[tuple[int, str]]:
        """Stored events inside the inclusive ranges, in seq order."""
        out: list[tuple[int, str]] = []
        with self._mutex:
            db = self._conn()
            for first, last in sorted(ranges):
                out += db.execute(
                    "SELECT seq, json FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq LIMIT ?",
                    (first, last, limit - len(out)),
                ).fetchall()
                if len(out) >= limit:
                    break
        return out

    def oldest_age_s(self) -> float | None:
        with self._mutex:
            row = self._conn().execute("SELECT created FROM events ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else max(0.0, self._clock() - row[0])

    def stats(self) -> OutboxStats:
        age = self.oldest_age_s()
        return OutboxStats(self._depth, age, self._last_seq, self.dropped_total, self.rejected_total)

    # ------------------------------------------------------------------ helpers

    def _set_last_seq(self, db: sqlite3.Connection, seq: int) -> None:
        db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (str(seq),))
        self._last_seq = seq

    def _transaction(self, db: sqlite3.Connection) -> _Transaction:
        return _Transaction(self, db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT; on failure ROLLBACK and restore the
    in-memory counters, so that memory never runs ahead of the disk."""

    def __init__(self, outbox: Outbox, db: sqlite3.Connection) -> None:
        self._outbox = outbox
        self._db = db
        self._saved = (outbox._last_seq, outbox._depth, outbox.dropped_total, outbox.rejected_total,
                       len(outbox._drops))

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as commit_exc:
                exc = commit_exc
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        o = self._outbox
        o._last_seq, o._depth, o.dropped_total, o.rejected_total, n_drops = self._saved
        del o._drops[n_drops:]
        if isinstance(exc, sqlite3.Error):
            raise OutboxError(str(o.path), f"write failed: {exc}") from exc


def new_outbox_first_seq(clock: Callable[[], float] = time.time) -> int:
    """The first sequence number for a new outbox: the Unix time in microseconds.

    A gateway whose outbox file is lost starts a new one; counting from 1 again
    would reuse numbers the server already holds, and ``(gateway_id, seq)`` is
    the server's unique key, so the new events would be taken for duplicates and
    silently not stored. Starting from the clock keeps every number above any
    the old outbox could have reached (it would have needed more than a million
    events per second). 2**63 microseconds is the year 294,000.
    """
    return int(clock() * 1_000_000)


def _encode(make: EventMaker, seq: int) -> str:
    event = make(seq)
    if event.seq != seq:
        raise OutboxError("<append>", f"event maker returned seq {event.seq}, expected {seq}")
    return wire.encode_event(event)


def _lock(path: Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise OutboxLockedError(str(path), f"locked by another process ({lock_path})") from exc
    return fd
