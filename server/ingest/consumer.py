"""The ingest service: MQTT messages in, one commit per batch, acks out.

The MQTT network thread only appends to a deque; a named asyncio task drains
it, commits in a worker thread and only then publishes the acknowledgements.
Nothing is acknowledged that is not committed. Every message taken off the
queue ends stored, duplicate or dead-lettered (IngestMetrics.outcomes): a
commit, and a dead-letter write, is retried while the database is down. Only
overload (shedding) and shutdown with the database down leave messages
unacknowledged, which their gateways send again from their outboxes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import sqlalchemy as sa

from rentgate import wire
from rentgate.aio import wait_event
from rentgate.mqtt import LinkSettings, MqttLink, Will, backoff_delays
from rentgate.outage import Outage, brief
from server.db.engine import database_reachable
from server.ingest.metrics import IngestMetrics
from server.ingest.parse import Message
from server.ingest.resend import GapLedger
from server.ingest.revoked import REFRESH_S, revoked_ids
from server.ingest.store import CommitResult, EventStore
from server.settings import ServerSettings

log = logging.getLogger(__name__)

# How often a database that went away is probed (a `SELECT 1`): ingest
# resumes within this long of its return.
PROBE_S = 0.25
_TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


def is_transient(exc: BaseException) -> bool:
    """Database unreachable or busy (retry the same batch) rather than refusing
    this particular data."""
    return isinstance(exc, _TRANSIENT) or bool(getattr(exc, "connection_invalidated", False))


class IngestService:
    def __init__(self, settings: ServerSettings, store: EventStore, *, metrics: IngestMetrics | None = None) -> None:
        self.settings = settings
        self.store = store
        # The app builds the store (server/app.py); the bound is a setting.
        store.max_seq_jump = settings.max_seq_jump
        self.gaps = GapLedger(store.engine)
        self.metrics = metrics or IngestMetrics()
        self.instance = f"{settings.mqtt_client_id}/{uuid.uuid4().hex[:8]}"
        self.database_ok = True
        # A database outage is logged when it starts and when it ends, with
        # its length; the retries in between are quiet (rentgate/outage.py).
        self.outage = Outage(log, "the database, for storing events")
        self._queue: deque[Message] = deque()
        self._lock = threading.Lock()
        self._signalled = False
        # "online" and "offline" on the status topic in the order they happen
        # (the first from the network thread, the second from the loop).
        self._status_lock = threading.Lock()
        self._said_offline = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # Called on the event loop after each committed batch that stored new
        # events (reconciliation and police watches wake on it instead of
        # polling). Must not block. Add with add_commit_listener.
        self._commit_listeners: list[Callable[[CommitResult], None]] = []
        # Called on the event loop with n: the n oldest messages offered and
        # not yet settled are now committed (or dead-lettered) and
        # acknowledged to their gateways, in the order they were offered. A
        # source that can hold a message until then (JetStream) acknowledges
        # it to the broker here. Add with add_settle_listener.
        self._settle_listeners: list[Callable[[int], None]] = []
        # With JetStream as the source, MQTT carries only what the server
        # publishes (acknowledgements, its status); events come from NATS.
        group = settings.ingest_share_group
        subscriptions = ([(wire.shared_subscription(wire.EVENTS_SUBSCRIPTION, group), 1),
                          (wire.shared_subscription(wire.STATUS_SUBSCRIPTION, group), 1)]
                         if settings.ingest_source == "mqtt" else [])
        # One of several workers (docs/scaling.md) keeps a status of its own:
        # its last will must not say the others are offline too. JetStream
        # workers share one consumer without a share group (docs/clustering.md).
        several = group is not None or settings.ingest_source == "jetstream"
        self.status_topic = (wire.server_worker_status_topic(settings.mqtt_client_id) if several
                             else wire.SERVER_STATUS_TOPIC)
        self.link = MqttLink(
            LinkSettings(
                url=settings.mqtt_url,
                fallback_urls=settings.mqtt_fallbacks(),
                client_id=settings.mqtt_client_id,
                # One server alone keeps a persistent session: the broker holds
                # the events for it while it restarts. A worker of a group
                # does not: its siblings take the events meanwhile, and a
                # session the broker kept for a worker that never comes back
                # would hold its share of the events for good. What a killed
                # worker had in flight is lost at the broker (Mosquitto does
                # not hand it to a sibling) and comes again from the
                # gateways' outboxes.
                clean_session=group is not None,
                subscriptions=subscriptions,
                will=Will(self.status_topic, self._server_status("offline")),
            ),
            on_message=self._on_message,
            on_subscribed=self._on_subscribed,
        )

    @property
    def mqtt_connected(self) -> bool:
        return self.link.connected.is_set()

    async def run(self) -> None:
        """Run until ``stop()``: then commit and acknowledge what has arrived, say
        offline, and disconnect."""
        self._loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tg:
            link_task = tg.create_task(self.link.run(), name="ingest-mqtt-link")
            tg.create_task(self._request_resends(), name="ingest-gap-resend")
            tg.create_task(self._refresh_revoked(), name="ingest-revoked-gateways")
            if self.settings.ingest_source == "jetstream":
                from server.ingest.jetstream import JetStreamSource

                tg.create_task(JetStreamSource(self.settings, self).run(self._stopping), name="ingest-jetstream")
            await self._drain()
            with self._status_lock:
                self._said_offline = True
                self.link.publish(self.status_topic, self._server_status("offline"), qos=1, retain=True)
            link_task.cancel()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    # ------------------------------------------------------------------ network thread

    def _on_message(self, topic: str, payload: bytes) -> None:
        self.offer(topic, payload)

    def offer(self, topic: str, payload: bytes) -> bool:
        """Queue one message for the database; any thread. False: shed (too
        many waiting), never to be settled; its gateway sends it again, or a
        source that holds messages gives it back to the broker."""
        with self._lock:
            if len(self._queue) >= self.settings.ingest_max_pending:
                self.metrics.messages_shed += 1
                return False
            self._queue.append((topic, bytes(payload), datetime.now(UTC)))
            self.metrics.messages_received += 1
            # Only the first message into an empty queue costs a loop wake-up.
            if self._signalled:
                return True
            self._signalled = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)
        return True

    def _on_subscribed(self) -> None:
        # Retained, so gateways that connect later also learn a server is up
        # and replay whatever they have not had acknowledged. Said only once
        # the broker has granted the subscriptions: a gateway replays on
        # hearing it, and a replay published before would reach nobody when
        # this server's session is new (first start, a broker that lost its
        # store, a worker of a group). Never after "offline" at a stop: a
        # SUBACK may still come then, and a retained "online" would outlive
        # this server (its clean DISCONNECT sends no last will).
        with self._status_lock:
            if not self._said_offline:
                self.link.publish(self.status_topic, self._server_status("online"), qos=1, retain=True)

    def _server_status(self, state: str) -> bytes:
        status = wire.ServerStatus(state=state, instance=self.instance, ts=wire.utcnow())  # type: ignore[arg-type]
        return status.model_dump_json(exclude_none=True).encode()

    # ------------------------------------------------------------------ drain and commit

    def _take(self, limit: int) -> list[Message]:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
            self.metrics.pending_messages = len(self._queue)
            if not self._queue:
                self._signalled = False
            return batch

    async def _drain(self) -> None:
        limit = self.settings.ingest_batch_messages
        while True:
            batch = self._take(limit)
            if not batch:
                if self._stopping.is_set():
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            if self.settings.ingest_linger_s and len(batch) < limit and not self._stopping.is_set():
                await asyncio.sleep(self.settings.ingest_linger_s)
                batch += self._take(limit - len(batch))
            await self._commit(batch)

    async def _commit(self, batch: list[Message]) -> None:
        # Failures with the database reachable (a deadlock between workers, a
        # busy database) back off; an unreachable database is probed instead.
        delays = backoff_delays(0.05, min(1.0, self.settings.commit_retry_max_s))
        while True:
            try:
                result = await asyncio.to_thread(self.store.commit, batch)
            except Exception as exc:  # noqa: BLE001 - classified below; ingest must go on
                self.metrics.commit_errors += 1
                if not is_transient(exc):
                    await self._isolate_poison(batch, exc)
                    return
                if self._stopping.is_set():
                    self.database_ok = False
                    log.error("database unavailable at shutdown; %s messages not committed, "
                              "their gateways will send them again: %s", len(batch), brief(exc))
                    return
                await self._retry_after(exc, next(delays))
                continue
            self._database_back()
            self._acknowledge(result)
            self._settle(len(batch))
            self._notify(result)
            return

    async def _retry_after(self, exc: BaseException, busy_delay_s: float) -> None:
        """Wait until a failed commit is worth trying again. A database that
        answers a probe was busy or the commit met another one (retry after
        ``busy_delay_s``); one that does not is down: an outage, logged once,
        and probed every PROBE_S so that the batch goes in within a probe of
        the database's return, not at the end of a backoff that grew while it
        was away (the gateways' ack timeout would resend everything then)."""
        if not self.outage.down and await self._probe():
            log.info("commit failed with the database reachable, retrying: %s", brief(exc))
            await self._pause(busy_delay_s)
            return
        self.database_ok = False
        self.outage.failed(exc)
        while not self._stopping.is_set():
            await self._pause(PROBE_S)
            if await self._probe():
                return

    async def _probe(self) -> bool:
        try:
            return await asyncio.to_thread(database_reachable, self.store.engine)
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            log.debug("database probe failed: %s", brief(exc))
            return False

    def _database_back(self) -> None:
        self.database_ok = True
        self.outage.ok()

    def add_settle_listener(self, listener: Callable[[int], None]) -> None:
        self._settle_listeners.append(listener)

    def _settle(self, count: int) -> None:
        for listener in self._settle_listeners:
            try:
                listener(count)
            except Exception:  # noqa: BLE001 - a listener's fault must not stop ingest
                log.exception("settle listener failed")

    def add_commit_listener(self, listener: Callable[[CommitResult], None]) -> None:
        self._commit_listeners.append(listener)

    def _notify(self, result: CommitResult) -> None:
        if not result.inserted:
            return
        for listener in self._commit_listeners:
            try:
                listener(result)
            except Exception:  # noqa: BLE001 - a listener's fault must not stop ingest
                log.exception("commit listener failed")

    async def _isolate_poison(self, batch: list[Message], exc: Exception) -> None:
        """A batch the database refuses for its content: split it until the
        message at fault is alone, then dead-letter that one."""
        if len(batch) > 1:
            half = len(batch) // 2
            await self._commit(batch[:half])
            await self._commit(batch[half:])
            return
        log.error("database refused a message on %s; dead-lettering it: %s", batch[0][0], exc, exc_info=exc)
        await self._dead_letter(batch[0], f"database refused: {exc}"[:2000])

    async def _dead_letter(self, message: Message, reason: str) -> None:
        """Keep a message as a dead letter, retrying until that is done: it is
        never dropped (only held, one at a time, while the queue behind it is
        bounded by ingest_max_pending). If the database refuses even the dead
        letter, a bare one follows (payload in base64, nothing else)."""
        delays = backoff_delays(0.2, self.settings.commit_retry_max_s)
        bare = False
        while True:
            try:
                result = await asyncio.to_thread(self.store.dead_letter_messages, [message], reason, bare=bare)
            except Exception as exc:  # noqa: BLE001 - classified below; the message must be kept
                self.metrics.commit_errors += 1
                if is_transient(exc):
                    if self._stopping.is_set():
                        log.error("shutting down with the database unavailable: a message on %s is left "
                                  "unacknowledged and not dead-lettered; a gateway sends its events again, "
                                  "anything else is lost", message[0])
                        return
                    await self._retry_after(exc, next(delays))
                    continue
                if not bare:
                    log.error("database refused the dead letter of a message on %s too; keeping a bare one: %s",
                              message[0], exc)
                    bare = True
                    continue
                else:
                    log.error("database refused even a bare dead letter of a message on %s, retrying: %s",
                              message[0], exc)
                if self._stopping.is_set():
                    log.error("shutting down: a message on %s is left unacknowledged and not dead-lettered; "
                              "a gateway sends its events again, anything else is lost", message[0])
                    return
                await self._pause(next(delays))
                continue
            self._database_back()
            self._acknowledge(result)
            self._settle(1)
            return

    def _acknowledge(self, result: CommitResult) -> None:
        self.metrics.record_commit(result)
        for gw, outcome in result.gateways.items():
            ack = outcome.ack()
            if ack is None:
                continue
            if self.link.publish(wire.ack_topic(gw), ack.model_dump_json(), qos=1):
                self.metrics.acks_published += 1
            else:
                log.debug("ack for %s not sent (MQTT down); the gateway will resend", gw)

    async def _pause(self, seconds: float) -> None:
        await wait_event(self._stopping, seconds)

    # ------------------------------------------------------------------ revoked gateways

    def note_revoked(self, gateway_id: str) -> None:
        """Refuse a gateway's messages from now on, before the next refresh."""
        self.store.revoked = self.store.revoked | {gateway_id}

    async def _refresh_revoked(self) -> None:
        while not self._stopping.is_set():
            try:
                self.store.revoked = await asyncio.to_thread(revoked_ids, self.store.engine)
            except sa.exc.SQLAlchemyError as exc:
                log.debug("revoked gateways not refreshed: %s", exc)
            await self._pause(REFRESH_S)

    # ------------------------------------------------------------------ gaps

    async def _request_resends(self) -> None:
        s = self.settings
        interval = min(1.0, s.gap_resend_delay_s / 2)
        while not self._stopping.is_set():
            await self._pause(interval)
            try:
                self.metrics.open_gaps = await asyncio.to_thread(self.gaps.count_open)
                if not self.mqtt_connected or not self.metrics.open_gaps:
                    continue
                due = await asyncio.to_thread(
                    self.gaps.claim_due, wire.utcnow(), delay_s=s.gap_resend_delay_s,
                    max_interval_s=s.gap_resend_max_interval_s,
                )
            except sa.exc.SQLAlchemyError as exc:
                log.debug("gap check skipped: %s", exc)
                continue
            for gw, ranges in due.items():
                log.info("asking gateway %s to resend %s", gw, ranges)
                if self.link.publish(wire.ack_topic(gw), wire.Ack(resend=ranges).model_dump_json(), qos=1):
                    self.metrics.resend_requests += 1
