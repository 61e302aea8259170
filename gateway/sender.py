"""The publishing state machine: what to send next, and when to send again.

Everything in the outbox is, by definition, not yet acknowledged by the
server. The sender keeps a cursor (the last seq it published) and the set of
seqs published but not acknowledged (the in-flight window). It publishes
after the cursor while the window has room: one event per message for live
traffic, batches of ``batch_max`` for a backlog, always in seq order.

The broker's PUBACK proves nothing about the server, so the sender replays
(cursor back to the start of the outbox) whenever delivery may have failed: a
reconnect, a server instance coming online, or no ack progress for
``ack_timeout_s``. The server deduplicates by (gateway, seq).

It holds (publishes nothing) while the server's retained status says it is
offline, and after each connect until that status has arrived or a short
wait has passed: a replay into a broker nobody reads only fills the broker,
and with several ingest workers on a shared subscription it is simply lost.

It needs no broker: ``publish(topic, payload, qos) -> bool`` is a plain
callable (``MqttLink.publish`` in production, a list in tests). All methods
are called on the event loop; :meth:`run` does the I/O.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from rentgate import wire
from rentgate.aio import wait_event

log = logging.getLogger(__name__)

PublishFn = Callable[[str, bytes, int], bool]


class SenderOutbox(Protocol):
    async def pending(self, after_seq: int, limit: int) -> list[tuple[int, str]]: ...

    async def select(self, ranges: Iterable[wire.SeqRange], limit: int = ...) -> list[tuple[int, str]]: ...

    async def acknowledge(self, committed: Iterable[wire.SeqRange],
                          rejected: Iterable[wire.SeqRange]) -> tuple[int, int]: ...


@dataclass
class SenderStats:
    published_events: int = 0
    published_messages: int = 0
    acked_events: int = 0  # rows deleted because the server committed them
    rejected_events: int = 0
    resent_events: int = 0
    replays: int = 0
    last_replay_reason: str | None = None


class Sender:
    def __init__(
        self,
        outbox: SenderOutbox,
        publish: PublishFn,
        *,
        gateway_id: str,
        batch_max: int = 500,
        inflight_max: int = 20_000,
        ack_timeout_s: float = 15.0,
        read_chunk: int = 5000,
        clock: Callable[[], float] = time.monotonic,
        await_status: bool = False,
    ) -> None:
        """``await_status``: hold from the start until a server status has
        arrived or a connect's wait for it has passed (``expect_server_status``);
        the gateway application does, a bare sender in a test need not."""
        self._outbox = outbox
        self._publish = publish
        self.gateway_id = gateway_id
        self._topic = wire.events_topic(gateway_id)
        self.batch_max = batch_max
        self.inflight_max = inflight_max
        self.ack_timeout_s = ack_timeout_s
        self._read_chunk = max(read_chunk, batch_max)
        self._clock = clock
        self._tick_s = min(1.0, ack_timeout_s / 4)
        self.stats = SenderStats()
        self.cursor = 0
        self._unacked: set[int] = set()
        self._progress_at = clock()
        self._acks: deque[wire.Ack] = deque()
        self._resend: list[wire.SeqRange] = []
        self._generation = 0  # bumped by every replay; reads from before it are stale
        self._server_offline = False
        # While set: hold until a server status arrives or the clock passes it
        # (infinity: until the next connect starts the wait).
        self._status_due: float | None = math.inf if await_status else None
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ notifications (on the loop)

    @property
    def inflight(self) -> int:
        return len(self._unacked)

    @property
    def holding(self) -> bool:
        """True while the server's status says it is offline, or a connect
        is still waiting for that status."""
        if self._status_due is not None and self._clock() >= self._status_due:
            self._status_due = None  # none came: a broker without one, send
        return self._server_offline or self._status_due is not None

    def wake(self) -> None:
        """New events are in the outbox (or the link may take more)."""
        self._wake.set()

    def replay(self, reason: str) -> None:
        """Send everything still in the outbox again, from the oldest seq."""
        self.stats.replays += 1
        self.stats.last_replay_reason = reason
        if self.cursor or self._unacked:
            log.info("replaying unacknowledged events (%s): cursor %d, %d in flight", reason, self.cursor,
                     len(self._unacked))
        self.cursor = 0
        self._unacked.clear()
        self._resend.clear()
        self._generation += 1
        self._progress_at = self._clock()
        self._wake.set()

    def handle_ack(self, ack: wire.Ack) -> None:
        self._acks.append(ack)
        self._wake.set()

    def set_server_online(self, online: bool) -> None:
        """While the server says it is offline, publishing only fills the broker."""
        if self._server_offline and online:
            log.info("server online again: sending what waited")
        elif not online and not self._server_offline:
            log.info("server offline: holding events in the outbox until it is back")
        self._server_offline = not online
        self._status_due = None
        self._wake.set()

    def expect_server_status(self, within_s: float) -> None:
        """Just connected: the broker is about to hand over the server's
        retained status. Hold until it has (``set_server_online``), at most
        ``within_s``."""
        self._status_due = self._clock() + within_s
        self._wake.set()

    def forget_server_status(self) -> None:
        """Disconnected: what the statuses said may be stale by the next
        connect, whose link is up (on its own thread) before the connect
        reaches the loop. Hold until then, and then until they come again."""
        self._status_due = math.inf

    def forget(self, first_seq: int, last_seq: int) -> None:
        """The outbox dropped these; no ack will ever come for them."""
        if last_seq - first_seq + 1 > len(self._unacked):
            self._unacked = {s for s in self._unacked if not first_seq <= s <= last_seq}
        else:
            self._unacked.difference_update(range(first_seq, last_seq + 1))

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        while True:
            self._wake.clear()
            await self.step()
            if not self._wake.is_set():
                tick = self._tick_s
                if self._status_due is not None:  # wake when the wait for a status ends
                    tick = max(0.0, min(tick, self._status_due - self._clock()))
                await wait_event(self._wake, tick)

    async def step(self) -> None:
        """One round: apply acks, check the ack timeout, answer resends, publish."""
        await self._apply_acks()
        self._check_ack_timeout()
        if self.holding:
            return
        if self._resend:
            await self._answer_resend()
        await self._pump()

    async def _apply_acks(self) -> None:
        while self._acks:
            ack = self._acks.popleft()
            if self._settle(ack.committed) + self._settle(ack.rejected):
                self._progress_at = self._clock()
            if ack.committed or ack.rejected:
                n_committed, n_rejected = await self._outbox.acknowledge(ack.committed, ack.rejected)
                self.stats.acked_events += n_committed
                self.stats.rejected_events += n_rejected
                if ack.rejected:
                    log.error("server rejected events %s (%d deleted from the outbox; see its dead-letter table)",
                              _fmt_ranges(ack.rejected), n_rejected)
            for first, last in ack.resend:
                if first <= self.cursor:
                    self._resend.append((first, min(last, self.cursor)))

    def _settle(self, ranges: list[tuple[int, int]]) -> int:
        before = len(self._unacked)
        for first, last in ranges:
            self.forget(first, last)
        return before - len(self._unacked)

    def _check_ack_timeout(self) -> None:
        if self._unacked and self._clock() - self._progress_at > self.ack_timeout_s:
            log.warning("no ack progress for %.1f s with %d events in flight", self.ack_timeout_s, len(self._unacked))
            self.replay("ack timeout")

    async def _answer_resend(self) -> None:
        ranges, self._resend = wire.merge_ranges(self._resend), []
        generation = self._generation
        rows = await self._outbox.select(ranges)
        if generation != self._generation:
            return  # a replay sends these anyway
        log.info("server asked for %s again; resending %d events", _fmt_ranges(ranges), len(rows))
        if self._send(rows):
            self.stats.resent_events += len(rows)

    async def _pump(self) -> None:
        while True:
            room = self.inflight_max - len(self._unacked)
            if room <= 0:
                return
            generation = self._generation
            rows = await self._outbox.pending(self.cursor, min(room, self._read_chunk))
            if generation != self._generation:
                continue
            if not rows:
                return
            if not self._send(rows):
                return  # not connected: a reconnect replays

    def _send(self, rows: list[tuple[int, str]]) -> bool:
        """Publish rows in order, up to ``batch_max`` per message; moves the
        cursor past what went out. False when the link refused a message."""
        for start in range(0, len(rows), self.batch_max):
            chunk = rows[start : start + self.batch_max]
            if not self._publish(self._topic, wire.batch_json(self.gateway_id, [j for _, j in chunk]), 1):
                return False
            if not self._unacked:
                self._progress_at = self._clock()
            self._unacked.update(seq for seq, _ in chunk)
            self.cursor = max(self.cursor, chunk[-1][0])
            self.stats.published_events += len(chunk)
            self.stats.published_messages += 1
        return True


def _fmt_ranges(ranges: Iterable[tuple[int, int]], limit: int = 10) -> str:
    ranges = list(ranges)
    text = ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:limit])
    return text + (f",... (+{len(ranges) - limit} ranges)" if len(ranges) > limit else "")
