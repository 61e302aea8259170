"""Login throttling: after MAX_FAILURES failed logins for one username or from
one client address within WINDOW, further attempts get 429 until the oldest
failure leaves the window. Kept in memory: a restart forgets it, and several
server processes each count on their own, which is acceptable for a check
that only has to make online guessing slow."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

MAX_FAILURES = 5
WINDOW_S = 15 * 60.0
# Bounds memory under a spray of distinct usernames: beyond this many keys
# the stalest are forgotten.
MAX_KEYS = 100_000


class LoginThrottle:
    def __init__(self, *, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, *keys: str) -> float:
        """Seconds until an attempt is allowed for all keys; 0 = allowed now."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.max_failures:
                wait = max(wait, times[-self.max_failures] + self.window_s - now)
        return wait

    def failed(self, *keys: str) -> None:
        now = self.clock()
        if len(self._failures) >= MAX_KEYS:
            stalest = sorted(self._failures, key=lambda k: self._failures[k][-1])[: MAX_KEYS // 10]
            for key in stalest:
                del self._failures[key]
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, username_key: str) -> None:
        """A correct password clears that username's count, not the address's:
        one valid account must not reset a guesser's budget for the others."""
        self._failures.pop(username_key, None)
