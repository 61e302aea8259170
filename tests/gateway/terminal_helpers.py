"""A recording sink for adapter tests."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from rentgate import wire


class RecordingSink:
    """Thread-safe, like the gateway's own sink."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reads: list[wire.Credential] = []
        self.statuses: list[tuple[bool, str | None, int | None]] = []
        self.door_states: list[str] = []
        self.verdicts: list[bool | None] = []
        self.crossings: list[tuple[Any, datetime]] = []

    def door_contact(self, is_open: bool) -> None:
        raise AssertionError("terminals judge their doors themselves: door_state, not door_contact")

    def door_state(self, state: str) -> None:
        with self._lock:
            self.door_states.append(state)

    def card_read(self, credential: wire.Credential, respond: object = None, verdict: bool | None = None) -> None:
        with self._lock:
            self.reads.append(credential)
            self.verdicts.append(verdict)

    def person_crossed(self, crossing: Any, at: datetime) -> None:
        with self._lock:
            self.crossings.append((crossing, at))

    def device_status(self, online: bool, detail: str | None = None, bad_frames: int | None = None) -> None:
        with self._lock:
            self.statuses.append((online, detail, bad_frames))

    def values(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(c.format, c.value) for c in self.reads]
