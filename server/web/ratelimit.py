"""A sliding-window limit per client, in memory: enough to keep one address
from flooding the public self-declaration form (and from probing identity
numbers through it). A restart forgets the counts, which is acceptable for
a limit whose job is to slow a script down, not to account."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    def __init__(self, limit: int, window_s: float, *, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._max_clients = max_clients
        self._hits: dict[str, deque[float]] = {}

    def hit(self, client: str) -> float | None:
        """Count one attempt; None if allowed, else the seconds until the next one is."""
        now = self._clock()
        hits = self._hits.get(client)
        if hits is None:
            if len(self._hits) >= self._max_clients:
                self._forget_idle(now)
            hits = self._hits.setdefault(client, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(0.0, hits[0] + self.window_s - now)
        hits.append(now)
        return None

    def _forget_idle(self, now: float) -> None:
        # Bounded memory under a spray of addresses: drop clients whose
        # window has passed; if none has, drop the oldest half.
        idle = [c for c, h in self._hits.items() if not h or h[-1] <= now - self.window_s]
        if not idle:
            idle = sorted(self._hits, key=lambda c: self._hits[c][-1])[: len(self._hits) // 2]
        for client in idle:
            del self._hits[client]


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
