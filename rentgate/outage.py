"""Quiet outages: a dependency that is down (the database, the broker) is
logged once when it goes and once when it comes back, with how long it was
away, not as a traceback per retry (issue 15: a two-minute database outage
used to write hundreds of tracebacks from every loop that retries).

Each retrying loop owns one ``Outage`` per dependency and calls ``failed``
on every failed attempt and ``ok`` on every success; only the changes are
logged at WARNING, the retries in between at DEBUG."""

from __future__ import annotations

import logging
import time


def brief(exc: BaseException, limit: int = 200) -> str:
    """What an error says, in one line and without the SQL and its parameters
    that SQLAlchemy appends (they may hold personal data): the exception's
    class and the first line of its message."""
    text = str(exc).split("\n", 1)[0]
    text = text.split("[SQL:", 1)[0].strip()
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Outage:
    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.log = logger
        self.what = what
        self.since: float | None = None
        self.attempts = 0
        # How many outages ended, and how long the last one lasted (metrics, tests).
        self.count = 0
        self.last_duration_s: float | None = None

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException | str) -> bool:
        """One failed attempt. True when this starts an outage (and was logged)."""
        reason = exc if isinstance(exc, str) else brief(exc)
        self.attempts += 1
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("%s unavailable, retrying quietly until it is back: %s", self.what, reason)
            return True
        self.log.debug("%s still unavailable (attempt %s): %s", self.what, self.attempts, reason)
        return False

    def ok(self) -> float | None:
        """One success. When it ends an outage: log that once and return its length in seconds."""
        if self.since is None:
            return None
        duration = time.monotonic() - self.since
        self.log.warning("%s back after %.1f s (%s failed attempts)", self.what, duration, self.attempts)
        self.since = None
        self.attempts = 0
        self.count += 1
        self.last_duration_s = duration
        return duration
