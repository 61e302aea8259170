"""The access controller as the running gateway uses it: the allowlist kept in
step with the server over MQTT, decisions for card reads, door contacts.

Decisions and door contacts run on the gateway's event loop (microseconds, an
in-memory lookup). Applying an allowlist message (a 100,000-entry snapshot
takes about a second) runs on a thread of its own, one message at a time and
in arrival order, so doors keep deciding from the previous list meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from gateway.access.config import AccessConfig
from gateway.access.controller import AccessController
from gateway.access.decide import Decision
from gateway.access.doors import DoorEvent
from gateway.access.store import AllowlistStore, ApplyResult
from rentgate import wire

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], bool]


class AccessRuntime:
    def __init__(self, gateway_id: str, config: AccessConfig, store_path: str, publish: Publish) -> None:
        self.gateway_id = gateway_id
        self.store = AllowlistStore(store_path, gateway_id, config.loaded_public_keys(),
                                    max_tombstones=config.max_tombstones)
        self.controller = AccessController(self.store, config)
        self._publish = publish
        self._apply_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="allowlist")
        self._topics = {wire.allowlist_topic(gateway_id), wire.allowlist_delta_topic(gateway_id)}
        self._listeners: list[Callable[[int | None], None]] = []

    def on_change(self, listener: Callable[[int | None], None]) -> None:
        """Call ``listener(version)`` on the loop after each applied snapshot
        or delta (terminals that keep their own copy of the list follow it)."""
        self._listeners.append(listener)

    @property
    def unlock_pulse_s(self) -> float:
        return self.controller.unlock_pulse_s

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(topic, 1) for topic in sorted(self._topics)]

    def handles(self, topic: str) -> bool:
        return topic in self._topics

    async def on_allowlist(self, payload: bytes) -> ApplyResult:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._apply_thread, self.store.apply, payload)
        if result.applied:
            log.info("gateway %s: allowlist %s version %s applied (%d credentials)", self.gateway_id,
                     result.kind, result.version, len(self.store))
            for listener in self._listeners:
                listener(result.version)
        elif result.need_snapshot:
            log.warning("gateway %s: allowlist out of step (%s); asking for a snapshot", self.gateway_id,
                        result.detail)
            self.request_snapshot(result.detail or "delta out of step")
        elif result.reason != "stale":
            log.warning("gateway %s: allowlist message refused: %s %s", self.gateway_id, result.reason,
                        result.detail or "")
        return result

    def request_snapshot(self, reason: str) -> None:
        request = wire.AllowlistRequest(gw=self.gateway_id, have_version=self.store.version, reason=reason[:200])
        self._publish(wire.allowlist_request_topic(self.gateway_id),
                      request.model_dump_json(exclude_none=True).encode())

    def decide(self, device: str, door: str | None, credential: wire.Credential) -> Decision:
        return self.controller.decide(device, door, credential)

    def contact(self, door: str, is_open: bool) -> list[DoorEvent]:
        return self.controller.contact(door, is_open)

    async def watch_doors(self, emit: Callable[[DoorEvent], None]) -> None:
        await self.controller.watch_doors(emit)

    def close(self) -> None:
        self._apply_thread.shutdown(wait=True)
        self.store.close()
