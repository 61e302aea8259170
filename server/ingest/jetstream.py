"""Events from a NATS JetStream work queue (ingest_source=jetstream).

In a clustered NATS deployment (docs/clustering.md) the gateways speak MQTT
to any node; NATS turns each MQTT publish on ``rentgate/v1/gw/<id>/events``
into a message on the subject ``rentgate.v1.gw.<id>.events``, which a
JetStream stream kept on three nodes captures. Every ingest worker pulls from
one durable consumer of that stream, so each message goes to one worker, and
a message is acknowledged to JetStream only once IngestService says it is
committed (or dead-lettered) and acknowledged to its gateway. A worker that
dies leaves its messages unacknowledged: JetStream gives them to another
worker after ``ack_wait``, and a message that was committed already is a
duplicate the database absorbs (ON CONFLICT) and that is acknowledged again.

The server's acknowledgements to gateways, its retained status and what it
publishes to gateways still go over MQTT (``mqtt_url``, a NATS node's MQTT
port): to a gateway NATS is just an MQTT broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from rentgate import wire
from rentgate.aio import wait_event
from rentgate.outage import Outage, brief
from server.errors import ServerError
from server.settings import nats_urls

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

    from server.ingest.consumer import IngestService
    from server.settings import ServerSettings

log = logging.getLogger(__name__)

STREAM = "rentgate-events"
CONSUMER = "rentgate-ingest"
# JetStream's answer when a stream of that name exists with another
# configuration (docs: "stream name already in use").
_STREAM_NAME_IN_USE = 10058
# How long a worker waits at shutdown for the last commit to be settled
# before it gives its unsettled messages back to the stream.
_SHUTDOWN_SETTLE_S = 10.0


def subject_of(topic: str) -> str:
    """The NATS subject NATS's MQTT listener gives an MQTT topic or filter:
    ``/`` becomes ``.``, ``+`` becomes ``*``, ``#`` becomes ``>``."""
    return ".".join({"+": "*", "#": ">"}.get(level, level) for level in topic.split("/"))


def topic_of(subject: str) -> str:
    """The MQTT topic of a subject, as the parser expects it. NATS 2.10 and
    later carry a ``.`` of an MQTT topic as ``//`` within a subject token;
    2.9 refuses such topics altogether (docs/clustering.md)."""
    return "/".join(token.replace("//", ".") for token in subject.split("."))


SUBJECTS = [subject_of(wire.EVENTS_SUBSCRIPTION), subject_of(wire.STATUS_SUBSCRIPTION)]


@dataclass(frozen=True, kw_only=True)
class StreamPlan:
    """The stream and its one durable consumer, as every worker makes them."""

    replicas: int
    max_bytes: int
    max_age_s: float
    ack_wait_s: float
    max_ack_pending: int

    def stream(self) -> StreamConfig:
        # A work queue: a message leaves the stream once a worker acknowledges
        # it. When the stream is full the newest message is refused rather
        # than the oldest dropped: the gateway that sent it still has it in
        # its outbox and sends it again when no ack comes (the backstop).
        return StreamConfig(
            name=STREAM, subjects=list(SUBJECTS), retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE, num_replicas=self.replicas, max_bytes=self.max_bytes,
            max_age=self.max_age_s, discard=DiscardPolicy.NEW,
            description="rentgate: gateways' events and status, for the ingest workers",
        )

    def consumer(self) -> ConsumerConfig:
        # max_deliver unlimited: a message is only ever redelivered because a
        # worker died or the database was away, never because of its content
        # (a bad payload is dead-lettered and acknowledged like a good one).
        return ConsumerConfig(
            durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait_s,
            max_ack_pending=self.max_ack_pending, max_deliver=-1,
            description="rentgate ingest workers (shared)",
        )


async def ensure_stream(js: JetStreamContext, plan: StreamPlan) -> None:
    """Create the stream and the consumer, or bring them to ``plan``: every
    worker does this as it starts, so the first creates and the others find."""
    try:
        await js.add_stream(plan.stream())
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code != _STREAM_NAME_IN_USE:
            raise
        await js.update_stream(plan.stream())
    await js.add_consumer(STREAM, plan.consumer())


@dataclass
class _Held:
    """A message offered to ingest and not yet settled."""

    msg: Msg
    # When JetStream last started its ack_wait clock (fetch, or in_progress).
    clock: float


class JetStreamSource:
    """Pulls the work queue into ``IngestService.offer`` and acknowledges each
    message when the service settles it (the n oldest offered, in order: this
    source is the only one offering when ingest_source is jetstream)."""

    def __init__(self, settings: ServerSettings, service: IngestService) -> None:
        self.settings = settings
        self.service = service
        self.urls = nats_urls(settings.nats_url or "")
        self.plan = StreamPlan(
            replicas=settings.nats_replicas or 1,  # or 3 in a cluster: decided once connected
            max_bytes=settings.nats_stream_max_bytes, max_age_s=settings.nats_stream_max_age_s,
            ack_wait_s=settings.nats_ack_wait_s,
            # The consumer's window is shared by every worker; each worker keeps
            # its own share below it (self.window).
            max_ack_pending=max(settings.ingest_batch_messages * 8, 1000),
        )
        # At most this many messages wait in one worker: two batches, so the
        # next is ready while one commits, and never more than offer() takes.
        self.window = min(2 * settings.ingest_batch_messages, settings.ingest_max_pending)
        self.outage = Outage(log, f"NATS JetStream ({', '.join(self.urls)})")
        self.acked = 0
        self.nakked = 0
        self.mismatches = 0
        self._held: deque[_Held] = deque()
        self._to_ack: deque[Msg] = deque()
        self._acks_due = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = False

    # ------------------------------------------------------------------ settle listener (event loop)

    def _settled(self, count: int) -> None:
        if count > len(self._held):
            # Someone else offered messages too (an MQTT subscription on the
            # same service): acknowledging by count would be wrong for them.
            self.mismatches += 1
            log.error("jetstream: %s messages settled but only %s held; offers from another source?",
                      count, len(self._held))
            count = len(self._held)
        for _ in range(count):
            self._to_ack.append(self._held.popleft().msg)
        self._acks_due.set()
        self._room.set()

    # ------------------------------------------------------------------ run

    async def run(self, stopping: asyncio.Event) -> None:
        self.service.add_settle_listener(self._settled)
        nc = await self._connect(stopping)
        if nc is None:
            return
        try:
            js = nc.jetstream()
            if not await self._ensure(js, nc, stopping):
                return
            async with asyncio.TaskGroup() as tg:
                acker = tg.create_task(self._acker(), name="jetstream-acker")
                keeper = tg.create_task(self._keep_held(), name="jetstream-in-progress")
                await self._pull(js, stopping)
                await self._finish()
                acker.cancel()
                keeper.cancel()
            await self._flush_acks()
            await self._give_back()
        finally:
            self._closing = True
            await _close(nc)

    async def _connect(self, stopping: asyncio.Event) -> Client | None:
        """Connected, retrying quietly (one line when it starts failing, one
        when it works) until stopping; nats-py reconnects by itself after."""

        async def error_cb(exc: Exception) -> None:
            self.outage.failed(exc)

        async def disconnected_cb() -> None:
            if not self._closing:
                self.outage.failed("disconnected")

        async def reconnected_cb() -> None:
            self.outage.ok()

        connecting = asyncio.create_task(nats.connect(
            self.urls, name=f"rentgate-ingest {self.service.instance}", error_cb=error_cb,
            disconnected_cb=disconnected_cb, reconnected_cb=reconnected_cb, connect_timeout=2,
            reconnect_time_wait=1, max_reconnect_attempts=-1, allow_reconnect=True,
        ), name="jetstream-connect")
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait({connecting, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not connecting.done():
            connecting.cancel()
            return None
        nc = connecting.result()
        self.outage.ok()
        return nc

    async def _ensure(self, js: JetStreamContext, nc: Client, stopping: asyncio.Event) -> bool:
        # nats-py keeps the server's INFO only in this attribute; "cluster"
        # is in it when the node is part of one.
        if self.settings.nats_replicas is None and (nc._server_info or {}).get("cluster"):
            # Alone, one copy is all there is; in a cluster three, so that one
            # node may be lost without losing a message.
            self.plan = replace(self.plan, replicas=3)
        while not stopping.is_set():
            try:
                await ensure_stream(js, self.plan)
            except (nats.errors.Error, TimeoutError) as exc:
                if isinstance(exc, nats.js.errors.BadRequestError):
                    # A refusal for the configuration (replicas above the
                    # cluster's size, limits the account does not allow) will
                    # not change by retrying: stop ingest with the reason.
                    raise ServerError(f"JetStream refused stream {STREAM} or its consumer: {brief(exc)}"
                                      f"{_hint(exc)}") from exc
                self.outage.failed(exc)
                await wait_event(stopping, 1.0)
                continue
            self.outage.ok()
            log.info("jetstream: pulling %s/%s (%s replicas) from %s", STREAM, CONSUMER, self.plan.replicas,
                     nc.connected_url.netloc if nc.connected_url else "?")
            if _version(nc) < (2, 10):
                log.warning("jetstream: NATS %s refuses MQTT topics containing '.': a gateway whose id has a '.' "
                            "cannot publish through it (NATS 2.10 and later accept them; docs/clustering.md)",
                            nc.connected_server_version)
            return True
        return False

    async def _pull(self, js: JetStreamContext, stopping: asyncio.Event) -> None:
        sub = await js.pull_subscribe_bind(CONSUMER, STREAM)
        batch = self.settings.ingest_batch_messages
        while not stopping.is_set():
            room = self.window - len(self._held)
            if room <= 0:
                self._room.clear()
                await wait_event(self._room, 1.0)
                continue
            try:
                msgs = await sub.fetch(min(batch, room), timeout=1.0)
            except TimeoutError:
                self.outage.ok()
                continue  # nothing waiting
            except nats.errors.Error as exc:
                self.outage.failed(exc)
                await wait_event(stopping, 0.5)
                continue
            self.outage.ok()
            if stopping.is_set():
                # IngestService may have drained for the last time: what it
                # was not offered goes straight back to the stream.
                for msg in msgs:
                    await self._nak(msg)
                return
            for msg in msgs:
                await self._offer(msg)

    async def _offer(self, msg: Msg) -> None:
        if self.service.offer(topic_of(msg.subject), msg.data):
            self._held.append(_Held(msg, time.monotonic()))
            return
        # Shed (ingest is full): back to the stream, to this or another
        # worker a little later.
        await self._nak(msg, delay=1.0)

    async def _nak(self, msg: Msg, delay: float | None = None) -> None:
        try:
            await msg.nak(delay=delay)
        except nats.errors.Error as exc:
            log.debug("jetstream: nak failed (redelivered after ack_wait anyway): %s", brief(exc))
            return
        self.nakked += 1

    async def _acker(self) -> None:
        while True:
            await self._acks_due.wait()
            self._acks_due.clear()
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        while self._to_ack:
            msg = self._to_ack.popleft()
            try:
                await msg.ack()
            except nats.errors.Error as exc:
                # Lost: JetStream redelivers it after ack_wait, the database
                # finds it committed and it is acknowledged then.
                log.debug("jetstream: ack failed (the message comes again, as a duplicate): %s", brief(exc))
                continue
            self.acked += 1

    async def _keep_held(self) -> None:
        """Messages this live worker holds longer than half of ack_wait (the
        database away, a long commit) get their clock restarted, so that
        JetStream gives to another worker only what a dead worker held."""
        period = self.plan.ack_wait_s / 3
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for held in list(self._held):
                if now - held.clock < self.plan.ack_wait_s / 2:
                    break  # the rest were fetched later
                try:
                    await held.msg.in_progress()
                except nats.errors.Error:
                    break  # disconnected: they come again; nothing to gain here
                held.clock = now

    async def _finish(self) -> None:
        """Stopping: IngestService commits what it has and settles it; wait
        for that (bounded: with the database down it gives up)."""
        deadline = time.monotonic() + _SHUTDOWN_SETTLE_S
        while self._held and time.monotonic() < deadline:
            self._room.clear()
            await wait_event(self._room, max(0.0, deadline - time.monotonic()))

    async def _give_back(self) -> None:
        """What was never settled goes back to the stream at once, rather
        than after ack_wait: another worker takes it."""
        if self._held:
            log.warning("jetstream: %s messages not settled at shutdown (the database away?); given back to "
                        "the stream for another worker", len(self._held))
        while self._held:
            await self._nak(self._held.popleft().msg)


def _hint(exc: nats.js.errors.BadRequestError) -> str:
    """What to change, for the refusals a deployment meets first."""
    text = str(exc.description or "")
    if "insufficient" in text or "no suitable peers" in text:
        return (" (each node's jetstream max_file_store must hold RENTGATE_NATS_STREAM_MAX_BYTES, and a cluster "
                "needs as many JetStream nodes as RENTGATE_NATS_REPLICAS; docs/clustering.md)")
    if "replicas" in text:
        return " (RENTGATE_NATS_REPLICAS above what the NATS deployment has; docs/clustering.md)"
    return ""


def _version(nc: Client) -> tuple[int, int]:
    try:
        major, minor = nc.connected_server_version.major, nc.connected_server_version.minor
        return int(major), int(minor)
    except (AttributeError, ValueError, TypeError):
        return (0, 0)


async def _close(nc: Client) -> None:
    """Flush the acknowledgements still buffered, then close."""
    try:
        await nc.flush(timeout=2)
    except (nats.errors.Error, TimeoutError):
        pass
    await nc.close()
