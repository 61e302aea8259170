"""A recording sink for adapter tests."""

from __future__ import annotations

import threading

from rentgate import wire


class RecordingSink:
    """Thread-safe, like the gateway's own sink."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reads: list[wire.Credential] = []
        self.statuses: list[tuple[bool, str | None, int | None]] = []

    def door_contact(self, is_open: bool) -> None:
        raise AssertionError("terminals report no door contacts yet")

    def card_read(self, credential: wire.Credential, respond: object = None) -> None:
        with self._lock:
            self.reads.append(credential)

    def device_status(self, online: bool, detail: str | None = None, bad_frames: int | None = None) -> None:
        with self._lock:
            self.statuses.append((online, detail, bad_frames))

    def values(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(c.format, c.value) for c in self.reads]
