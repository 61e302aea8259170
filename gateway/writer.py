"""The outbox as the event loop sees it: every call runs on one worker thread
(so SQLite's fsync never blocks the loop), and appends are group-committed.

While a commit is on its way to disk, new appends queue up and go together in
the next transaction: a burst of swipes costs one fsync per batch, not per
event, and each caller still returns only after its own events are durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, ParamSpec, TypeVar

from gateway.errors import OutboxClosedError
from gateway.outbox import DropReport, EventMaker, Outbox, OutboxStats
from rentgate import wire

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_Pending = tuple[list[EventMaker], "asyncio.Future[list[int]]"]


class AsyncOutbox:
    """Create with :meth:`open` inside a running loop; :meth:`close` waits for
    the commit in progress."""

    def __init__(self, outbox: Outbox, executor: ThreadPoolExecutor) -> None:
        self.outbox = outbox
        self._executor = executor
        self._queue: list[_Pending] = []
        self._committer: asyncio.Task[None] | None = None
        self._closing = False
        self._commit_listeners: list[Callable[[list[int]], None]] = []
        self._drop_listeners: list[Callable[[DropReport], None]] = []
        self.commits = 0  # transactions, for tests and stats

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        gateway_id: str,
        max_events: int = 1_000_000,
        max_age_s: float = 30 * 86400,
        synchronous: Literal["full", "normal"] = "full",
        first_seq: int = 1,
    ) -> AsyncOutbox:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        loop = asyncio.get_running_loop()
        try:
            outbox = await loop.run_in_executor(
                executor,
                lambda: Outbox(path, gateway_id=gateway_id, max_events=max_events, max_age_s=max_age_s,
                               synchronous=synchronous, first_seq=first_seq),
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(outbox, executor)

    async def __aenter__(self) -> AsyncOutbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def on_commit(self, listener: Callable[[list[int]], None]) -> None:
        """Called on the loop with the seqs of each commit (the sender's wake-up)."""
        self._commit_listeners.append(listener)

    def on_drop(self, listener: Callable[[DropReport], None]) -> None:
        self._drop_listeners.append(listener)

    # ------------------------------------------------------------------ appends

    def submit(self, makers: Sequence[EventMaker]) -> asyncio.Future[list[int]]:
        """Queue events for the next group commit; the future resolves to their
        seqs once they are on disk. Callable from loop callbacks (no await)."""
        if self._closing:
            raise OutboxClosedError(str(self.outbox.path), "closing; not accepting events")
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.append((list(makers), future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_loop(), name="outbox-commit")
        return future

    async def append(self, makers: Sequence[EventMaker]) -> list[int]:
        # Shielded: a cancelled caller must not leave its events half-known;
        # the commit goes on and the seqs are simply not returned.
        return await asyncio.shield(self.submit(makers))

    async def _commit_loop(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            try:
                seqs = await self._run(self.outbox.append_each, [m for makers, _ in group for m in makers])
            except Exception:
                # One bad event must not fail its neighbours: commit each caller alone.
                for makers, future in group:
                    await self._commit_one(makers, future)
            else:
                self._resolve(group, seqs)
            self._publish_drops()

    async def _commit_one(self, makers: list[EventMaker], future: asyncio.Future[list[int]]) -> None:
        try:
            seqs = await self._run(self.outbox.append_each, makers)
        except Exception as exc:
            log.error("outbox %s: events could not be stored: %s", self.outbox.path, exc)
            if not future.done():
                future.set_exception(exc)
        else:
            self._resolve([(makers, future)], seqs)

    def _resolve(self, group: list[_Pending], seqs: list[int | None]) -> None:
        """Each caller gets the seqs of its events that were stored (an event
        its device had delivered before has none)."""
        self.commits += 1
        at = 0
        for makers, future in group:
            if not future.done():
                future.set_result([s for s in seqs[at : at + len(makers)] if s is not None])
            at += len(makers)
        stored = [s for s in seqs if s is not None]
        if stored:
            for listener in self._commit_listeners:
                listener(stored)

    def _publish_drops(self) -> None:
        for report in self.outbox.take_drops():
            for listener in self._drop_listeners:
                listener(report)

    # ------------------------------------------------------------------ everything else

    async def pending(self, after_seq: int, limit: int) -> list[tuple[int, str]]:
        return await self._run(self.outbox.pending, after_seq, limit)

    async def select(self, ranges: Iterable[wire.SeqRange], limit: int = 1_000_000) -> list[tuple[int, str]]:
        return await self._run(self.outbox.select, list(ranges), limit)

    async def acknowledge(self, committed: Iterable[wire.SeqRange],
                          rejected: Iterable[wire.SeqRange]) -> tuple[int, int]:
        return await self._run(self.outbox.acknowledge, list(committed), list(rejected))

    async def enforce_age(self) -> DropReport | None:
        report = await self._run(self.outbox.enforce_age)
        await self._run(self.outbox.forget_sources)
        self._publish_drops()
        if report is not None:
            for listener in self._commit_listeners:
                listener([report.event_seq])
        return report

    async def stats(self) -> OutboxStats:
        return await self._run(self.outbox.stats)

    def depth(self) -> int:
        return self.outbox.depth()

    async def close(self) -> None:
        self._closing = True
        committer = self._committer
        if committer is not None and not committer.done():
            await asyncio.shield(committer)
        await self._run(self.outbox.close)
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
