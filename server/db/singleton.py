"""One process of a kind per database: a PostgreSQL session advisory lock
held for the process's life.

The reconcile role runs the background services (reconciliation, police
watches, retention, fleet gauges) that must run exactly once
(docs/scaling.md). A second one started by mistake would publish every
allowlist twice and race the first for the same work, so it refuses to
start instead. The lock is the session's: it goes when the holding process
dies, however it dies (its connection closes), so a restarted process takes
it at once. SQLite needs none: it serves one process.

The lock also goes when the database restarts, while the process lives on.
``HeldLock.check``, run every few seconds by the holder, notices the dead
connection and takes the lock again on a new one; if another process took
it meanwhile, this one has lost its place and must stop (the server exits,
and a restart is then refused like any second process)."""

from __future__ import annotations

import logging
import zlib
from typing import Literal

import sqlalchemy as sa

from server.errors import ServerError

log = logging.getLogger(__name__)


class AlreadyRunning(ServerError):
    """Another process holds the lock of this kind on this database."""


def lock_key(kind: str) -> int:
    """A stable 32-bit key for ``kind`` (advisory locks take a bigint)."""
    return zlib.crc32(f"rentgate:{kind}".encode())


def hold(engine: sa.Engine, kind: str) -> sa.Connection | None:
    """Take the lock of ``kind`` and return the connection that holds it
    (close it to let go), None on a database that needs none. Raises
    AlreadyRunning when another process holds it."""
    if engine.dialect.name != "postgresql":
        return None
    # Autocommit: a connection idle in a transaction for days would hold back
    # vacuum and be cut by idle_in_transaction_session_timeout.
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        taken = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(kind)}).scalar()
    except BaseException:
        conn.close()
        raise
    if not taken:
        conn.close()
        raise AlreadyRunning(kind)
    return conn


LockState = Literal["held", "retaken", "database_away", "lost"]


class HeldLock:
    """The lock of ``kind``, kept for the process's life across database
    restarts (``check``)."""

    def __init__(self, engine: sa.Engine, kind: str) -> None:
        self.engine = engine
        self.kind = kind
        self._conn: sa.Connection | None = None
        self._needed = engine.dialect.name == "postgresql"

    def take(self) -> None:
        """Take the lock at start; raises AlreadyRunning."""
        self._conn = hold(self.engine, self.kind)

    def check(self) -> LockState:
        """Whether this process still holds the lock: ``held`` (its
        connection answers), ``retaken`` (the database had restarted and the
        lock is ours again), ``database_away`` (no database to ask: try
        again later; nobody else can take it meanwhile either) or ``lost``
        (another process holds it now)."""
        if not self._needed:
            return "held"  # SQLite: nothing to hold
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT 1"))
                return "held"
            except sa.exc.DBAPIError:
                pass  # the connection died with the database's restart, and the lock with it
            self._close()
        try:
            self._conn = hold(self.engine, self.kind)
        except AlreadyRunning:
            return "lost"
        except sa.exc.DBAPIError as exc:
            log.debug("%s lock: database still away: %s", self.kind, exc)
            return "database_away"
        return "retaken"

    def close(self) -> None:
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        # A dead connection may raise on close: that must not spoil a retake or a shutdown.
        try:
            conn.close()
        except sa.exc.SQLAlchemyError as exc:
            log.debug("%s lock connection already gone: %s", self.kind, exc)
