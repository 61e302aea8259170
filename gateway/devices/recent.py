"""A bounded memory of recently seen message ids, for devices that deliver at
least once (MQTT QoS 1 redeliveries, HTTP pushes retried after a lost 200)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class RecentKeys:
    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[Hashable, None] = OrderedDict()
        self._lock = threading.Lock()

    def seen_before(self, key: Hashable) -> bool:
        """True if ``key`` was seen among the last ``capacity`` keys; remembers it."""
        with self._lock:
            if key in self._keys:
                return True
            self._keys[key] = None
            if len(self._keys) > self.capacity:
                self._keys.popitem(last=False)
            return False
