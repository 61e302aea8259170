"""New events, told across processes (docs/scaling.md).

In one process (role ``all``) reconciliation and the police watches wake on
ingest's commit listeners. When ingest runs in processes of its own (role
``ingest``) the background process (role ``reconcile``) learns of their
commits here instead:

- on PostgreSQL each ingest worker sends ``NOTIFY rentgate_events`` after a
  commit that stored new events, carrying the commits' ``stored_at`` stamps
  (the watches find a batch's events by them); ``CommitFeed`` LISTENs on one
  connection of its own and calls its listeners as ingest's would be;
- while that connection is down, and on SQLite (which has no notifications),
  the feed polls the newest event id every ``POLL_S`` instead, so nothing
  waits for the next sweep. After every (re)connect it wakes the listeners
  once: a notification sent while nobody listened is gone, and the
  reconciler's catch-up reads by its own watermark, not by the message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import psycopg
import sqlalchemy as sa
from aiohttp import web

from rentgate.aio import wait_event
from rentgate.outage import Outage
from server.appkeys import ENGINE
from server.db.models import events
from server.ingest.store import CommitResult

log = logging.getLogger(__name__)

CHANNEL = "rentgate_events"
POLL_S = 1.0
# Stamps per notification: PostgreSQL caps a payload at 8000 bytes, a stamp
# takes about 35.
MAX_STAMPS = 150
Listener = Callable[[CommitResult], None]


def is_postgresql(engine: sa.Engine) -> bool:
    return engine.dialect.name == "postgresql"


def libpq_url(engine: sa.Engine) -> str:
    """The engine's URL as psycopg takes it (without SQLAlchemy's driver name)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def payload(stamps: list[datetime]) -> str:
    return json.dumps({"stored_at": [s.isoformat() for s in stamps]})


def stamps_of(text: str) -> list[datetime]:
    """The stamps a notification carries; none from one we cannot read (it
    still wakes the listeners)."""
    try:
        return [datetime.fromisoformat(s) for s in json.loads(text)["stored_at"]]
    except (ValueError, TypeError, KeyError):
        return []


class CommitNotifier:
    """The ingest side: after each commit that stored events, one NOTIFY
    (several commits made while one is being sent go out together). A NOTIFY
    that fails is dropped: the feed's poll and the sweeps cover it, and
    ingest must never wait for it."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.sent = 0
        self._stamps: list[datetime] = []
        self._wake = asyncio.Event()
        self.outage = Outage(log, "the database, for new-event notifications")

    def on_commit(self, result: CommitResult) -> None:
        """Ingest's commit listener (on the loop)."""
        if result.stored_at is not None:
            self._stamps.append(result.stored_at)
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await wait_event(self._wake, 1.0)
            if not self._wake.is_set():
                continue
            self._wake.clear()
            stamps, self._stamps = self._stamps[-MAX_STAMPS:], []
            try:
                await asyncio.to_thread(self._notify, stamps)
            except sa.exc.SQLAlchemyError as exc:
                self.outage.failed(exc)
                continue
            self.outage.ok()
            self.sent += 1

    def _notify(self, stamps: list[datetime]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.select(sa.func.pg_notify(CHANNEL, payload(stamps))))


class CommitFeed:
    """The background side: calls its listeners, on the loop, for commits
    made by other processes (``add_commit_listener`` as on IngestService)."""

    def __init__(self, engine: sa.Engine, *, poll_s: float = POLL_S) -> None:
        self.engine = engine
        self.poll_s = poll_s
        self.listening = asyncio.Event()
        self.notifications = 0
        self.polls = 0
        self._listeners: list[Listener] = []
        self._newest_id: int | None = None
        self.outage = Outage(log, "the database connection for new-event notifications (LISTEN)")

    def add_commit_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _tell(self, result: CommitResult) -> None:
        for listener in self._listeners:
            try:
                listener(result)
            except Exception:  # noqa: BLE001 - a listener's fault must not stop the feed
                log.exception("commit listener failed")

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            if is_postgresql(self.engine):
                try:
                    await self._listen(stopping)
                except (psycopg.Error, OSError) as exc:
                    self.listening.clear()
                    self.outage.failed(exc)
            # Not listening (SQLite, or the connection is down): poll until the next try.
            await self._poll_once()
            await wait_event(stopping, self.poll_s)

    async def _listen(self, stopping: asyncio.Event) -> None:
        conn = await psycopg.AsyncConnection.connect(libpq_url(self.engine), autocommit=True, connect_timeout=5)
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.outage.ok()
            self.listening.set()
            # Whatever was committed while nobody listened.
            self._tell(CommitResult(inserted=1))
            gen = conn.notifies(timeout=self.poll_s)
            while not stopping.is_set():
                async for note in gen:
                    self.notifications += 1
                    stamps = stamps_of(note.payload)
                    if not stamps:
                        self._tell(CommitResult(inserted=1))
                    for stamp in stamps:
                        self._tell(CommitResult(inserted=1, stored_at=stamp))
                # notifies() ends at its timeout: check the connection, then listen on.
                await conn.execute("SELECT 1")
                gen = conn.notifies(timeout=self.poll_s)
        self.listening.clear()

    async def _poll_once(self) -> None:
        try:
            newest = await asyncio.to_thread(self._newest)
        except sa.exc.SQLAlchemyError as exc:
            if not is_postgresql(self.engine):
                self.outage.failed(exc)
            return
        self.polls += 1
        if newest != self._newest_id:
            self._newest_id = newest
            self._tell(CommitResult(inserted=1))

    def _newest(self) -> int | None:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(sa.func.max(events.c.id))).scalar()
        return None if value is None else int(value)


COMMITS = web.AppKey("commit_feed", CommitFeed)


async def commit_feed_ctx(app: web.Application) -> AsyncIterator[None]:
    """The feed of a background process that does not ingest itself."""
    feed = CommitFeed(app[ENGINE])
    app[COMMITS] = feed
    stopping = asyncio.Event()
    task = asyncio.create_task(feed.run(stopping), name="commit-feed")
    yield
    stopping.set()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
