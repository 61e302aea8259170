"""Suppress the repeats a reader sends while a tag stays in its field."""

from __future__ import annotations

from collections import OrderedDict


class Debouncer:
    """Accept a key once, then suppress it until it has been absent ``window_s``.

    Every repeat refreshes the key's last-seen time, so a tag held in the field
    for a minute is one read. Memory is bounded: keys older than the window are
    forgotten, and at most ``max_keys`` are remembered (the stalest go first).
    A window of 0 accepts everything.
    """

    def __init__(self, window_s: float, *, max_keys: int = 4096) -> None:
        if window_s < 0:
            raise ValueError(f"debounce window must be >= 0, got {window_s!r}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys!r}")
        self.window_s = window_s
        self._max_keys = max_keys
        self._last_seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last_seen)

    def accept(self, key: str, now: float) -> bool:
        if self.window_s == 0:
            return True
        self._forget_older_than(now - self.window_s)
        last = self._last_seen.pop(key, None)
        self._last_seen[key] = now
        if len(self._last_seen) > self._max_keys:
            self._last_seen.popitem(last=False)
        return last is None or now - last >= self.window_s

    def _forget_older_than(self, cutoff: float) -> None:
        # Oldest first, because every sighting moves its key to the end.
        while self._last_seen:
            key, seen = next(iter(self._last_seen.items()))
            if seen > cutoff:
                return
            del self._last_seen[key]
