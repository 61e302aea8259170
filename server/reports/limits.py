"""How many reports a plate takes: at most REPORTS_PER_CLIENT_PER_HOUR from
one client address for one unit, and REPORTS_PER_UNIT_PER_DAY for a unit
from everyone (a flood from many addresses still ends there).

Counted in the database (problem_reports by unit and time, one index), so
the limits hold across restarts and server processes. The client's address
is never stored: only a keyed digest of it (HMAC-SHA256 under a key derived
from the plate keyring's signing key). Rotating the plate key therefore
starts the per-client counts afresh, which is harmless."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

import sqlalchemy as sa

from server.db.models import problem_reports
from server.plates.keys import Keyring
from server.reports.errors import RateLimited

REPORTS_PER_CLIENT_PER_HOUR = 3
REPORTS_PER_UNIT_PER_DAY = 20
CLIENT_WINDOW = timedelta(hours=1)
UNIT_WINDOW = timedelta(days=1)


def client_digest(keyring: Keyring, address: str) -> str:
    key = hmac.new(keyring.current_key, b"rentgate report client digest v1", hashlib.sha256).digest()
    return hmac.new(key, address.encode(), hashlib.sha256).hexdigest()


def _oldest_if_full(conn: sa.Connection, limit: int, *conditions: sa.ColumnElement[bool]) -> datetime | None:
    """The oldest report in the window when the window holds ``limit``."""
    p = problem_reports.c
    rows = conn.execute(sa.select(p.created_at).where(*conditions).order_by(p.created_at.desc())
                        .limit(limit)).scalars().all()
    return rows[-1] if len(rows) >= limit else None


def check(conn: sa.Connection, now: datetime, unit_id: int, digest: str | None) -> None:
    """RateLimited when this report would be over a limit."""
    p = problem_reports.c
    oldest = _oldest_if_full(conn, REPORTS_PER_UNIT_PER_DAY, p.unit_id == unit_id,
                             p.created_at > now - UNIT_WINDOW)
    if oldest is not None:
        raise RateLimited("unit", max(1.0, (oldest + UNIT_WINDOW - now).total_seconds()))
    if digest is not None:
        oldest = _oldest_if_full(conn, REPORTS_PER_CLIENT_PER_HOUR, p.unit_id == unit_id,
                                 p.created_at > now - CLIENT_WINDOW, p.client_digest == digest)
        if oldest is not None:
            raise RateLimited("client", max(1.0, (oldest + CLIENT_WINDOW - now).total_seconds()))
