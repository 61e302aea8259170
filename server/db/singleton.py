"""One process of a kind per database: a PostgreSQL session advisory lock
held for the process's life.

The reconcile role runs the background services (reconciliation, police
watches, retention, fleet gauges) that must run exactly once
(docs/scaling.md). A second one started by mistake would publish every
allowlist twice and race the first for the same work, so it refuses to
start instead. The lock is the session's: it goes when the holding process
dies, however it dies (its connection closes), so a restarted process takes
it at once. SQLite needs none: it serves one process."""

from __future__ import annotations

import zlib

import sqlalchemy as sa

from server.errors import ServerError


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
