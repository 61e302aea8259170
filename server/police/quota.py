"""Rate limits and daily quotas of police callers.

The per-minute rate is a sliding window in memory (server/web/ratelimit.py).
The daily quota counts identity numbers checked (a batch counts each line)
per local day: counted in memory on the hot path and written to
``police_usage`` every few seconds (adding the increments), and read back
from there the first time a caller is seen on a day, so a restart does not
reset anyone's day. Several server processes each keep their own view
between writes, so together they can exceed a quota by what they count in
one flush interval; docs/police.md says so."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from server.db.models import police_usage
from server.web.ratelimit import RateLimiter


@dataclass
class _Day:
    day: date
    used: int            # as known: stored + not yet written
    unwritten: int = 0
    unwritten_requests: int = 0


class UsageMeter:
    def __init__(self) -> None:
        self._days: dict[int, _Day] = {}
        self._lock = threading.Lock()
        self._rates: dict[int, RateLimiter] = {}

    def rate_hit(self, user_id: int, per_minute: int) -> float | None:
        """None if allowed, else seconds until the next request is."""
        with self._lock:
            limiter = self._rates.get(user_id)
            if limiter is None or limiter.limit != per_minute:
                limiter = self._rates[user_id] = RateLimiter(per_minute, 60.0)
            return limiter.hit(str(user_id))

    def known(self, user_id: int, day: date) -> bool:
        with self._lock:
            entry = self._days.get(user_id)
            return entry is not None and entry.day == day

    def load(self, conn: sa.Connection, user_id: int, day: date) -> None:
        """Reads the stored count of ``day`` (first use of the day)."""
        stored = conn.execute(sa.select(police_usage.c.subjects).where(
            police_usage.c.user_id == user_id, police_usage.c.day == day)).scalar()
        with self._lock:
            entry = self._days.get(user_id)
            if entry is None or entry.day != day:
                self._days[user_id] = _Day(day, int(stored or 0))

    def left(self, user_id: int, day: date, quota: int) -> int:
        with self._lock:
            entry = self._days.get(user_id)
            used = entry.used if entry is not None and entry.day == day else 0
            return max(0, quota - used)

    def add(self, user_id: int, day: date, subjects: int) -> None:
        with self._lock:
            entry = self._days.get(user_id)
            if entry is None or entry.day != day:
                entry = self._days[user_id] = _Day(day, 0)
            entry.used += subjects
            entry.unwritten += subjects
            entry.unwritten_requests += 1

    def flush(self, engine: sa.Engine) -> int:
        """Adds what was counted since the last flush to the table; returns
        how many callers' rows were written. On failure the counts stay to be
        written next time."""
        with self._lock:
            pending = [(uid, e.day, e.unwritten, e.unwritten_requests) for uid, e in self._days.items()
                       if e.unwritten or e.unwritten_requests]
            for entry in self._days.values():
                entry.unwritten = entry.unwritten_requests = 0
        if not pending:
            return 0
        try:
            with engine.begin() as conn:
                for uid, day, subjects, requests in pending:
                    updated = conn.execute(
                        sa.update(police_usage)
                        .where(police_usage.c.user_id == uid, police_usage.c.day == day)
                        .values(subjects=police_usage.c.subjects + subjects,
                                requests=police_usage.c.requests + requests)).rowcount
                    if not updated:
                        conn.execute(sa.insert(police_usage).values(user_id=uid, day=day, subjects=subjects,
                                                                    requests=requests))
        except Exception:
            with self._lock:
                for uid, day, subjects, requests in pending:
                    kept = self._days.get(uid)
                    if kept is not None and kept.day == day:
                        kept.unwritten += subjects
                        kept.unwritten_requests += requests
            raise
        return len(pending)
