"""The audit log inside the server: group-committed appends and the
periodic signed checkpoint, each a named asyncio task.

Every police request waits for its entry to be durable before it answers,
so appends are on the hot path. One commit per request would queue every
request behind the last one's fsync (and, across processes, behind the head
row's lock); instead callers enqueue and await, and one writer takes all that
is queued, appends it in one transaction, commits, and wakes them all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from rentgate.aio import wait_event
from rentgate.mqtt import backoff_delays
from server.audit import canonical, store
from server.audit.entries import AuditEntry
from server.audit.errors import AuditKeyUnavailable, AuditUnavailable
from server.audit.keys import AuditKey
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

# During an outage each batch fails at once and the next waits this long at
# most: callers get a 503 within seconds, not a hung request.
RETRY_MAX_S = 2.0
CHECKPOINT_RETRY_MAX_S = 60.0
STOP_TIMEOUT_S = 30.0
# Entries per transaction at most.
MAX_BATCH = 2000


@dataclass
class _Waiting:
    entries: tuple[AuditEntry, ...]
    done: asyncio.Future[list[int]]


class AuditLog:
    def __init__(self, engine: sa.Engine, *, key: AuditKey | None = None,
                 checkpoint_interval_s: float = 60.0) -> None:
        self.engine = engine
        # None: records are appended but no checkpoint is signed (a PostgreSQL
        # server without RENTGATE_AUDIT_KEY_FILE); the server logs why.
        self.key = key
        self.checkpoint_interval_s = checkpoint_interval_s
        self.commits = 0
        self.failures = 0
        # Set after every periodic checkpoint made (or found unneeded), and
        # after every failed attempt: tests await them instead of sleeping.
        self.checkpoint_ran = asyncio.Event()
        self.checkpoint_failed = asyncio.Event()
        self._queue: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # Until start(), and again from stop() on, appends are refused: with
        # no writer they would wait for ever.
        self._closed = True
        self._tasks: list[asyncio.Task[None]] = []
        # The writer's own thread: it never queues behind request handlers
        # in the default pool.
        self._executor: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------ appending

    def append_in(self, conn: sa.Connection, *entries: AuditEntry, now: datetime | None = None) -> list[int]:
        """Appends inside the caller's open write transaction (see
        server/audit/store.append_in); durable when the caller commits."""
        return store.append_in(conn, entries, now)

    async def append(self, *entries: AuditEntry) -> list[int]:
        """Returns the entries' seqs once they are committed. Raises
        InvalidAuditEntry for an entry that cannot be stored (nothing of this
        call is written then) and AuditUnavailable when the database fails."""
        for entry in entries:
            canonical.check_entry(entry)
        if self._closed:
            raise AuditUnavailable("the audit log is not running; nothing is appended")
        if not entries:
            return []
        waiting = _Waiting(entries, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        self._wake.set()
        # Shielded: a caller that gives up does not take its entries out of a
        # batch already on its way to the database.
        return await asyncio.shield(waiting.done)

    # ------------------------------------------------------------ checkpoints

    async def checkpoint(self) -> store.Checkpoint | None:
        """Signs the current head now if the log grew since the last
        checkpoint; None when nothing is new. Raises AuditKeyUnavailable
        without a key."""
        if self.key is None:
            raise AuditKeyUnavailable("no audit signing key: checkpoints cannot be signed")
        key = self.key
        return await asyncio.to_thread(self._checkpoint_now, key)

    def _checkpoint_now(self, key: AuditKey) -> store.Checkpoint | None:
        with write_transaction(self.engine) as conn:
            return store.make_checkpoint(conn, key)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
        writer = asyncio.create_task(self._write_loop(), name="audit-writer")
        writer.add_done_callback(self._writer_ended)
        self._tasks = [writer]
        self._closed = False
        if self.key is not None:
            self._tasks.append(asyncio.create_task(self._checkpoint_loop(self.key), name="audit-checkpoints"))

    async def stop(self) -> None:
        """Commits what is queued, signs a last checkpoint over it, and ends
        both tasks; later appends raise AuditUnavailable."""
        self._closed = True
        if not self._tasks:
            return
        self._stopping.set()
        self._wake.set()
        _, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
        for task in pending:
            log.error("audit task %s did not stop within %ss", task.get_name(), STOP_TIMEOUT_S)
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_queued(AuditUnavailable("the audit log stopped before these entries were written"))
        if self.key is not None and not pending:
            await self._last_checkpoint(self.key)
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    async def _last_checkpoint(self, key: AuditKey) -> None:
        try:
            await asyncio.wait_for(asyncio.to_thread(self._checkpoint_now, key), STOP_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a shutdown goes on; the next start signs it
            log.warning("audit log: no checkpoint at shutdown: %s", one_line(exc))

    # ------------------------------------------------------------ the writer

    async def _write_loop(self) -> None:
        delays = _backoff(RETRY_MAX_S)
        while True:
            if not self._queue:
                if self._stopping.is_set():
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._take()
            if await self._commit(batch):
                delays = _backoff(RETRY_MAX_S)
            elif not self._stopping.is_set():
                await self._pause(next(delays))

    async def _commit(self, batch: list[_Waiting]) -> bool:
        entries = [entry for waiting in batch for entry in waiting.entries]
        loop = asyncio.get_running_loop()
        try:
            seqs = await loop.run_in_executor(self._executor, self._append_committed, entries)
        except Exception as exc:  # noqa: BLE001 - every waiter gets the error; the writer goes on
            self.failures += 1
            _log_failure(f"{len(entries)} entries not written, their requests fail", exc)
            error = AuditUnavailable(f"the audit log cannot be written: {one_line(exc)}")
            error.__cause__ = exc
            for waiting in batch:
                _settle(waiting.done, error=error)
            return False
        self.commits += 1
        taken = iter(seqs)
        for waiting in batch:
            _settle(waiting.done, result=[next(taken) for _ in waiting.entries])
        return True

    def _take(self) -> list[_Waiting]:
        """What is queued, up to MAX_BATCH entries (always at least one
        call): a burst becomes several bounded transactions, not one that
        holds the head row for seconds."""
        count, taken = 0, 0
        for waiting in self._queue:
            if taken and count + len(waiting.entries) > MAX_BATCH:
                break
            count += len(waiting.entries)
            taken += 1
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        """A writer that died of a bug must not leave callers waiting."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("audit writer failed; appends are refused until the server restarts", exc_info=task.exception())
        self._closed = True
        self._fail_queued(AuditUnavailable("the audit log's writer failed"))

    def _append_committed(self, entries: list[AuditEntry]) -> list[int]:
        with write_transaction(self.engine) as conn:
            return store.append_in(conn, entries, checked=True)

    def _fail_queued(self, error: Exception) -> None:
        batch, self._queue = self._queue, []
        for waiting in batch:
            _settle(waiting.done, error=error)

    # ------------------------------------------------------------ checkpoints, periodically

    async def _checkpoint_loop(self, key: AuditKey) -> None:
        """One at start (entries of a previous run may be unsigned), then
        every interval while the log grows."""
        delays = _backoff(CHECKPOINT_RETRY_MAX_S)
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self._checkpoint_now, key)
            except Exception as exc:  # noqa: BLE001 - supervised: one line, back off, go on
                self.failures += 1
                self.checkpoint_failed.set()
                delay = next(delays)
                _log_failure(f"checkpoint failed, retrying in {delay:.1f}s", exc)
                await self._pause(delay)
                continue
            delays = _backoff(CHECKPOINT_RETRY_MAX_S)
            self.checkpoint_ran.set()
            await self._pause(self.checkpoint_interval_s)

    async def _pause(self, seconds: float) -> None:
        await wait_event(self._stopping, seconds)


def _settle(done: asyncio.Future[list[int]], *, result: list[int] | None = None,
            error: BaseException | None = None) -> None:
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
        # Marked as seen: a caller that gave up (its await was cancelled)
        # leaves nobody to retrieve it, and asyncio would log it at exit.
        done.exception()
    else:
        done.set_result(result or [])


def _backoff(maximum: float) -> Iterator[float]:
    delays: Iterator[float] = backoff_delays(0.1, maximum)
    return delays


def _log_failure(what: str, exc: Exception) -> None:
    """A database that is down or refusing is an outage, expected to pass:
    one WARNING line each time, no traceback. Anything else is a bug and
    gets its traceback."""
    if isinstance(exc, (sa.exc.SQLAlchemyError, OSError)):
        log.warning("audit log: %s: %s", what, one_line(exc))
    else:
        log.error("audit log: %s", what, exc_info=exc)


def one_line(exc: BaseException) -> str:
    """An exception as one log line: SQLAlchemy's texts carry the statement
    and a link on further lines, which a WARNING about an outage does not need."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"

