"""Uploads the spooled snapshots: ``PUT {server_url}/api/v1/gateways/{gw}/
events/{seq}/snapshot`` with the JPEG as the body.

The server takes a picture only for an event it has stored, and answers 404
until then (the event may still be in the outbox, or the gateway offline):
so 404 is retried like a connection error or a 5xx, with a capped jittered
backoff. 200/201/204 mean stored, and the local file goes; 400, 413 and 415
will never succeed and the picture is dropped. Anything the spool keeps
longer than ``snapshot_keep_days`` is deleted by its prune, so nothing is
retried for ever.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from dataclasses import dataclass
from typing import Literal

import aiohttp

from gateway.camera.errors import SpoolError
from gateway.camera.spool import PendingUpload, SnapshotSpool
from rentgate.aio import wait_event

log = logging.getLogger(__name__)

Result = Literal["stored", "dropped", "retry"]
_STORED = (200, 201, 204)
_REFUSED = (400, 413, 415)
_PRUNE_EVERY_S = 600.0
_IDLE_WAIT_S = 60.0
_BATCH = 20


@dataclass
class UploadStats:
    stored: int = 0
    dropped: int = 0
    retried: int = 0
    pruned: int = 0


class SnapshotUploader:
    """With ``server_url`` None it only keeps the spool within its bounds."""

    def __init__(self, spool: SnapshotSpool, server_url: str | None, *, timeout_s: float = 30.0,
                 retry_max_s: float = 300.0, retry_base_s: float = 1.0,
                 login: tuple[str, str] | None = None) -> None:
        self.spool = spool
        # An enrolled gateway's id and broker password: the server wants them
        # with every upload (HTTP Basic, over the server's https).
        self.headers = {"Authorization": "Basic " + base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
                        } if login is not None else {}
        self.server_url = server_url.rstrip("/") if server_url is not None else None
        self.timeout_s = timeout_s
        self.retry_max_s = retry_max_s
        self.retry_base_s = retry_base_s
        self.stats = UploadStats()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A new picture is ready (on the loop)."""
        self._wake.set()

    def url_for(self, item: PendingUpload) -> str:
        return f"{self.server_url}/api/v1/gateways/{item.gw}/events/{item.seq}/snapshot"

    async def run(self) -> None:
        if self.server_url is None:
            while True:
                self.stats.pruned += await asyncio.to_thread(self.spool.prune, time.time())
                await asyncio.sleep(_PRUNE_EVERY_S)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        pruned_at = 0.0
        async with aiohttp.ClientSession(timeout=timeout, headers=self.headers) as session:
            while True:
                self._wake.clear()
                now = time.time()
                if now - pruned_at >= _PRUNE_EVERY_S:
                    pruned_at = now
                    self.stats.pruned += await asyncio.to_thread(self.spool.prune, now)
                for item in await asyncio.to_thread(self.spool.due, now, _BATCH):
                    await self._one(session, item)
                next_try = await asyncio.to_thread(self.spool.next_try)
                wait = _IDLE_WAIT_S if next_try is None else min(_IDLE_WAIT_S, max(0.0, next_try - time.time()))
                await wait_event(self._wake, wait)

    async def _one(self, session: aiohttp.ClientSession, item: PendingUpload) -> None:
        result = await self.upload(session, item)
        if result == "retry":
            self.stats.retried += 1
            await asyncio.to_thread(self.spool.retry, item.id, time.time() + self.backoff(item.attempts))
            return
        if result == "stored":
            self.stats.stored += 1
        else:
            self.stats.dropped += 1
        await asyncio.to_thread(self.spool.forget, item.id)

    def backoff(self, attempts: int) -> float:
        # Jittered so that gateways coming back after an outage do not all
        # upload in the same second.
        return min(self.retry_max_s, self.retry_base_s * 2.0 ** min(attempts, 30)) * random.uniform(0.5, 1.0)  # noqa: S311 - not for security

    async def upload(self, session: aiohttp.ClientSession, item: PendingUpload) -> Result:
        jpeg = await asyncio.to_thread(self.spool.read, item.sha256)
        if jpeg is None:
            log.warning("snapshot for event %s/%d: the picture is gone from the spool; dropped", item.gw, item.seq)
            return "dropped"
        try:
            async with session.put(self.url_for(item), data=jpeg, headers={"Content-Type": "image/jpeg"}) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("snapshot for event %s/%d: server unreachable (%s); will retry", item.gw, item.seq,
                     type(exc).__name__)
            return "retry"
        if status in _STORED:
            log.debug("snapshot for event %s/%d stored (%d)", item.gw, item.seq, status)
            return "stored"
        if status in _REFUSED:
            log.warning("snapshot for event %s/%d refused by the server (%d); dropped", item.gw, item.seq, status)
            return "dropped"
        # 404: the event is not stored yet; 429: the server's per-address
        # limit; 5xx: the server's trouble. All pass with time.
        if status not in (404, 429) and status < 500:
            log.warning("snapshot for event %s/%d: unexpected answer %d; will retry", item.gw, item.seq, status)
        return "retry"


async def store_snapshot(spool: SnapshotSpool, jpeg: bytes, gw: str) -> tuple[int, str] | None:
    """Write a picture durably off the loop; None (logged) if it cannot be
    kept, so that its event still goes out without one."""
    try:
        return await asyncio.to_thread(spool.store, jpeg, gw)
    except SpoolError as exc:
        log.error("a door snapshot could not be kept: %s", exc.reason)
        return None
