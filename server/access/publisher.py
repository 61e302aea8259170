"""Signed allowlists out over MQTT, with a client of its own (``<server client
id>-access``) so that 20 MB snapshots never queue behind event acks.

Deltas go out at once from the request that caused them (revocation latency is
what counts); snapshots are built by one named task that coalesces requests
for the same gateway, and always carry the version the database holds at
build time, so a retained snapshot never goes back in version. When the
broker is away nothing is kept here: the next connect republishes every
gateway's snapshot. A catch-up task also republishes any list whose version
is ahead of what was last published, so changes committed by another
process (an import) reach the gateways within seconds.

With several processes (docs/scaling.md) every web process publishes what
its own requests change (deltas at once, and the snapshots they ask for),
while only the one that runs the background services (``background``)
answers the gateways' requests, republishes everything on connect and runs
the catch-up: N web processes must not each answer every request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from rentgate import wire
from rentgate.mqtt import LinkSettings, MqttLink
from rentgate.outage import Outage
from server.access import allowlists
from server.access.allowlists import Change
from server.access.keys import SigningKey
from server.settings import ServerSettings

log = logging.getLogger(__name__)

CLIENT_ID_SUFFIX = "-access"
# How often to look for lists changed without a publish from this process:
# by `rentgate import` (another process), or committed just before a crash.
CATCH_UP_INTERVAL_S = 10.0


def client_id(server_client_id: str) -> str:
    return server_client_id[: 64 - len(CLIENT_ID_SUFFIX)] + CLIENT_ID_SUFFIX


def _gateway_of(topic: str) -> str | None:
    parts = topic.split("/")
    return parts[-2] if len(parts) >= 2 else None


class AllowlistPublisher:
    def __init__(self, settings: ServerSettings, engine: sa.Engine, key: SigningKey | None, *,
                 background: bool = True) -> None:
        self.engine = engine
        self.key = key
        self.background = background
        self.keep_revoked = timedelta(days=settings.allowlist_revoked_keep_days)
        self.counters: Counter[str] = Counter()
        self.outage = Outage(log, "the database, for publishing allowlists")
        self.link = MqttLink(
            LinkSettings(url=settings.mqtt_url, fallback_urls=settings.mqtt_fallbacks(),
                         client_id=client_id(settings.mqtt_client_id),
                         subscriptions=[(wire.ALLOWLIST_REQUEST_SUBSCRIPTION, 1)] if background else []),
            on_message=self._on_message,
            on_connect=self._on_connect,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[str, list[asyncio.Future[bool]]] = {}
        self._all_pending = False
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Run until cancelled."""
        self._loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.link.run(), name="allowlist-mqtt-link")
            tg.create_task(self._snapshots(), name="allowlist-snapshots")
            if self.background:
                tg.create_task(self._catch_up(), name="allowlist-catch-up")

    # ------------------------------------------------------------------ callers on the loop

    def publish_deltas(self, changes: list[Change]) -> bool:
        """Publish each change that has a delta; True if all went out."""
        ok = True
        for change in changes:
            if change.base_version is None:
                continue
            if self.key is None or not self.link.connected.is_set():
                ok = False
                continue
            message = self.key.sign(allowlists.delta_payload(change, datetime.now(UTC)))
            sent = self.link.publish(wire.allowlist_delta_topic(change.gateway_id), message, qos=1)
            self.counters["deltas_published" if sent else "deltas_unsent"] += 1
            ok = ok and sent
        return ok

    async def refresh(self, gateway_ids: list[str]) -> bool:
        """Republish these gateways' snapshots; True once all are out."""
        futures = [self._request(gw) for gw in gateway_ids]
        results = await asyncio.gather(*futures)
        return all(results)

    def _request(self, gateway_id: str) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(gateway_id, []).append(future)
        self._wake.set()
        return future

    def _request_all(self) -> None:
        self._all_pending = True
        self._wake.set()

    # ------------------------------------------------------------------ network thread

    def _on_connect(self) -> None:
        if self._loop is not None and self.background:
            self._loop.call_soon_threadsafe(self._request_all)

    def _on_message(self, topic: str, payload: bytes) -> None:
        gw = _gateway_of(topic)
        try:
            request = wire.decode_allowlist_request(payload)
        except wire.WireError as exc:
            self.counters["requests_rejected"] += 1
            log.warning("allowlist request on %s rejected: %s", topic, exc)
            return
        if request.gw != gw:
            self.counters["requests_rejected"] += 1
            log.warning("allowlist request on %s names gateway %s; ignored", topic, request.gw)
            return
        self.counters["requests"] += 1
        log.info("gateway %s asks for its allowlist (has version %s: %s)", gw, request.have_version, request.reason)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._request_untracked, request.gw)

    def _request_untracked(self, gateway_id: str) -> None:
        self._pending.setdefault(gateway_id, [])
        self._wake.set()

    # ------------------------------------------------------------------ snapshot task

    async def _snapshots(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._all_pending:
                try:
                    everyone = await asyncio.to_thread(self._gateways_with_lists)
                except sa.exc.SQLAlchemyError as exc:
                    # Kept pending: the catch-up's next round wakes this again.
                    self.outage.failed(exc)
                    everyone = []
                else:
                    self._all_pending = False
                for gw in everyone:
                    self._pending.setdefault(gw, [])
            pending, self._pending = self._pending, {}
            for gw, futures in pending.items():
                try:
                    ok = await self._publish_snapshot(gw)
                    self.outage.ok()
                except sa.exc.SQLAlchemyError as exc:
                    # The database is away: once in the log, not once per gateway
                    # and retry; the next connect or catch-up publishes it.
                    self.outage.failed(exc)
                    ok = False
                except Exception:  # noqa: BLE001 - one gateway's failure must not stop the others
                    log.exception("allowlist snapshot for gateway %s failed", gw)
                    ok = False
                for future in futures:
                    if not future.done():
                        future.set_result(ok)

    async def _catch_up(self) -> None:
        while True:
            await asyncio.sleep(CATCH_UP_INTERVAL_S)
            if not self.link.connected.is_set():
                continue
            try:
                behind = await asyncio.to_thread(self._unpublished)
            except sa.exc.SQLAlchemyError as exc:  # the next round tries again
                self.outage.failed(exc)
                continue
            except Exception:  # noqa: BLE001 - a fault of ours, not an outage: waits for the next round
                log.exception("allowlist catch-up query failed")
                continue
            self.outage.ok()
            if self._all_pending:
                self._wake.set()  # the republish on connect that the outage held up
            for gw in behind:
                if gw not in self._pending:
                    log.info("allowlist of %s changed without a publish; republishing", gw)
                    self._request_untracked(gw)

    def _unpublished(self) -> list[str]:
        with self.engine.connect() as conn:
            return allowlists.unpublished_gateways(conn)

    def _gateways_with_lists(self) -> list[str]:
        with self.engine.connect() as conn:
            return allowlists.gateways_with_lists(conn)

    async def _publish_snapshot(self, gateway_id: str) -> bool:
        if self.key is None or not self.link.connected.is_set():
            return False
        started = time.monotonic()
        built = await asyncio.to_thread(self._build, gateway_id, self.key)
        if built is None:
            return True
        version, entries, message = built
        if not self.link.publish(wire.allowlist_topic(gateway_id), message, qos=1, retain=True):
            self.counters["snapshots_unsent"] += 1
            return False
        self.counters["snapshots_published"] += 1
        await asyncio.to_thread(self._mark_published, gateway_id, version)
        log.info("allowlist snapshot for %s: version %s, %s entries, %s bytes in %.0f ms", gateway_id, version,
                 entries, len(message), (time.monotonic() - started) * 1000)
        return True

    def _build(self, gateway_id: str, key: SigningKey) -> tuple[int, int, bytes] | None:
        now = datetime.now(UTC)
        with self.engine.connect() as conn:
            snapshot = allowlists.read_snapshot(conn, gateway_id, now, self.keep_revoked)
        if snapshot is None:
            return None
        return snapshot.version, len(snapshot.entries), key.sign(snapshot.payload(now))

    def _mark_published(self, gateway_id: str, version: int) -> None:
        with self.engine.begin() as conn:
            allowlists.mark_published(conn, gateway_id, version, datetime.now(UTC))
