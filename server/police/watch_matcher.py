"""Finds the door reads of watched persons and raises their alerts.

**What is watched.** The index maps each card of a watched person, as
``(building, format, value)``, to the active watches on that person: active
watch → ``persons.id_digest`` → ``credentials.person_id``. Revoked cards
count (a moved-out tenant trying an old card is still that person), unless
the same card value is now held, active, by someone else in that building.
It lives in memory, rebuilt by every sweep (below), after every change the
routes and the expiry task make, and every ``sweep_interval_s``.

**The fast path.** Ingest calls ``on_commit`` on the event loop after each
committed batch. With no watched card the call returns at once: ingest pays
one attribute read. Otherwise the batch's ``stored_at`` (every event of a
batch carries the batch's one stamp; server/ingest/store.py finds its own
new rows the same way) is queued, and the matcher's task looks up, in a
worker thread, the batch's ``card_read`` events whose credential value is a
watched one (the partial index on ``events.credential_value``), matches
building and format in memory, and raises the alerts.

**Why no read is missed.** The fast path can miss a read: the index may be
a few seconds old (a watch set or a card handed out since), another server
process may have stored the event, the database may have failed, or the
process may have died between ingest's commit and the match. So a sweep
matches again every event *stored* since the previous sweep started, minus
``SWEEP_OVERLAP`` (10 minutes: far longer than any commit takes), at
start-up from the oldest active watch on, and after each failure. Only the
events of watched cards are read (the same index), so a sweep costs what
the watched persons' reads cost, not what the city's do.

**Why no alert is raised twice.** ``police_alerts`` is unique on
``(watch_id, event_id)`` and alerts are inserted ``ON CONFLICT DO NOTHING``:
the fast path and any number of sweeps may find a read; one row results.

**Which reads count.** A ``card_read`` stored while the watch is active
(checked in the inserting transaction, ``state`` and ``expires_at``) that
occurred, by the gateway's clock, no earlier than ``CLOCK_SKEW`` (5 minutes)
before the watch was set: a gateway replaying last week's backlog does not
report sightings from before the watch existed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.dialects import postgresql, sqlite

from rentgate.aio import wait_event
from rentgate.outage import Outage, brief
from server.auth.scopes import scope_buildings
from server.db.models import (
    buildings,
    credentials,
    events,
    gateways,
    persons,
    police_alerts,
    police_principals,
    police_watches,
)
from server.ingest.store import CommitResult
from server.police.watches import new_public_id
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(minutes=5)
SWEEP_OVERLAP = timedelta(minutes=10)
SWEEP_INTERVAL_S = 30.0
# Bound parameters per IN list: well under SQLite's and psycopg's limits.
_CHUNK = 500
_RETRY_MIN_S = 1.0
_RETRY_MAX_S = 30.0

CardKey = tuple[int, str, str]  # (building id, credential format, credential value)


@dataclass(frozen=True)
class Watched:
    watch_id: int
    # Reads that occurred before this are not the watch's (created_at - CLOCK_SKEW).
    since: datetime


@dataclass(frozen=True)
class WatchIndex:
    cards: Mapping[CardKey, tuple[Watched, ...]] = field(default_factory=dict)
    values: tuple[str, ...] = ()
    # Active watches (also those whose person has no card here).
    watches: int = 0

    @property
    def empty(self) -> bool:
        return not self.cards

    @property
    def oldest(self) -> datetime | None:
        """The earliest read any indexed watch takes."""
        return min((w.since for ws in self.cards.values() for w in ws), default=None)


@dataclass(frozen=True)
class Sighting:
    watch_id: int
    event_id: int
    building_id: int
    door: str | None
    seen_at: datetime


def load_index(conn: sa.Connection) -> WatchIndex:
    """The cards of every active watch's person (one join, then one look at
    the revoked cards' values)."""
    w, p, c = police_watches.c, persons.c, credentials.c
    watches = conn.execute(sa.select(sa.func.count()).select_from(police_watches)
                           .where(w.state == "active")).scalar_one()
    if not watches:
        return WatchIndex()
    rows = conn.execute(
        sa.select(w.id, w.created_at, c.building_id, c.format, c.value, c.person_id, c.revoked_at)
        .select_from(police_watches.join(persons, p.id_digest == w.id_digest).join(credentials, c.person_id == p.id))
        .where(w.state == "active")).all()
    revoked_values = sorted({r.value for r in rows if r.revoked_at is not None})
    held_by: dict[CardKey, int] = {}
    for chunk in _chunks(revoked_values):
        for held in conn.execute(sa.select(c.building_id, c.format, c.value, c.person_id).where(
                c.revoked_at.is_(None), c.value.in_(sa.bindparam("v", expanding=True))), {"v": chunk}):
            if held.person_id is not None:
                held_by[(int(held.building_id), held.format, held.value)] = int(held.person_id)
    cards: dict[CardKey, dict[int, Watched]] = {}
    for r in rows:
        key = (int(r.building_id), r.format, r.value)
        if r.revoked_at is not None and held_by.get(key, r.person_id) != r.person_id:
            continue  # the card was handed to someone else since
        cards.setdefault(key, {})[int(r.id)] = Watched(int(r.id), r.created_at - CLOCK_SKEW)
    return WatchIndex({k: tuple(v.values()) for k, v in cards.items()},
                      tuple(sorted({k[2] for k in cards})), int(watches))


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = list(values)
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


def find_sightings(conn: sa.Connection, index: WatchIndex, *, stored_at: Iterable[datetime] = (),
                   stored_since: datetime | None = None) -> list[Sighting]:
    """The reads of watched cards among the events stored at one of the
    ``stored_at`` stamps (the fast path) or since ``stored_since`` (a sweep)."""
    oldest = index.oldest
    if oldest is None:
        return []
    e, g = events.c, gateways.c
    base = (sa.select(e.id, e.occurred_at, e.door, e.credential_format, e.credential_value, g.building_id)
            .join(gateways, g.id == e.gateway_id)
            .where(e.kind == "card_read", e.credential_value.in_(sa.bindparam("v", expanding=True)),
                   g.building_id.is_not(None), e.occurred_at >= oldest))
    stamps = sorted(set(stored_at))
    if stamps:
        base = base.where(e.stored_at.in_(sa.bindparam("s", expanding=True)))
    elif stored_since is not None:
        base = base.where(e.stored_at >= stored_since)
    else:
        raise ValueError("find_sightings needs stored_at or stored_since")
    found: list[Sighting] = []
    for chunk in _chunks(index.values):
        params: dict[str, Any] = {"v": chunk}
        if stamps:
            params["s"] = stamps
        for row in conn.execute(base, params):
            for watched in index.cards.get((int(row.building_id), row.credential_format, row.credential_value), ()):
                if row.occurred_at >= watched.since:
                    found.append(Sighting(watched.watch_id, int(row.id), int(row.building_id), row.door,
                                          row.occurred_at))
    return found


def raise_alerts(conn: sa.Connection, sightings: list[Sighting], now: datetime) -> int:
    """Inserts one alert per (watch, read) not raised yet, for watches still
    active and not past their end; returns how many are new. In a write
    transaction: the watches' rows are locked (PostgreSQL) so a withdrawal
    cannot slip between the check and the insert."""
    if not sightings:
        return 0
    w, a = police_watches.c, police_alerts.c
    ids = sorted({s.watch_id for s in sightings})
    active: set[int] = set()
    for chunk in _chunks(ids):
        active.update(int(i) for i in conn.execute(
            sa.select(w.id).where(w.id.in_(sa.bindparam("ids", expanding=True)), w.state == "active",
                                  w.expires_at > now).with_for_update(), {"ids": chunk}).scalars())
    outside = _outside_jurisdiction(conn, sorted(active), sorted({s.building_id for s in sightings}))
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    # RETURNING says whether a row went in (rowcount is not reliable for
    # ON CONFLICT DO NOTHING through every driver).
    insert = (dialect_insert(police_alerts).on_conflict_do_nothing(index_elements=[a.watch_id, a.event_id])
              .returning(a.id))
    raised: dict[int, int] = {}
    # Alerts are delivered per watch in the order of their ids: insert them
    # in the order the person was seen.
    for s in sorted(sightings, key=lambda s: (s.watch_id, s.seen_at, s.event_id)):
        if s.watch_id not in active or (s.watch_id, s.building_id) in outside:
            continue
        inserted = conn.execute(insert.values(
            public_id=new_public_id(), watch_id=s.watch_id, event_id=s.event_id, building_id=s.building_id,
            door=s.door, seen_at=s.seen_at, created_at=now, attempts=0, next_attempt_at=now)).first()
        if inserted is not None:
            raised[s.watch_id] = raised.get(s.watch_id, 0) + 1
    for watch_id, n in raised.items():
        conn.execute(police_watches.update().where(w.id == watch_id).values(alerts=w.alerts + n))
    return sum(raised.values())


def _outside_jurisdiction(conn: sa.Connection, watch_ids: list[int], building_ids: list[int]
                          ) -> set[tuple[int, int]]:
    """(watch, building) pairs where the building lies outside the
    jurisdiction of the client that set the watch. Such reads raise no
    alert: as in every police answer (docs/police.md), a client hears of
    door events only at the doors of its own area; whereabouts elsewhere
    are that area's force's to ask."""
    if not watch_ids or not building_ids:
        return set()
    w, p, b = police_watches.c, police_principals.c, buildings.c
    owners = conn.execute(sa.select(w.id, w.user_id).join(police_principals, p.user_id == w.user_id).where(
        w.id.in_(sa.bindparam("ids", expanding=True)), p.jurisdiction.is_not(None)), {"ids": watch_ids}).all()
    inside: dict[int, set[int]] = {}
    outside: set[tuple[int, int]] = set()
    for watch_id, user_id in owners:
        if user_id not in inside:
            scope = scope_buildings("police", int(user_id))
            if scope is None:
                inside[user_id] = set(building_ids)
            else:
                inside[user_id] = {int(i) for i in conn.execute(
                    sa.select(b.id).where(b.id.in_(sa.bindparam("b", expanding=True)), b.id.in_(scope)),
                    {"b": building_ids}).scalars()}
        outside.update((int(watch_id), building) for building in building_ids if building not in inside[user_id])
    return outside


@dataclass
class MatcherStats:
    alerts_raised: int = 0
    fast_matches: int = 0
    sweeps: int = 0
    failures: int = 0


class WatchMatcher:
    """The in-memory index, the ingest listener and the task that matches.
    All database work runs in worker threads, one piece at a time."""

    def __init__(self, engine: sa.Engine, *, on_alerts: Callable[[], None] = lambda: None,
                 sweep_interval_s: float = SWEEP_INTERVAL_S) -> None:
        self.engine = engine
        self.on_alerts = on_alerts
        self.sweep_interval_s = sweep_interval_s
        self.index = WatchIndex()
        self.stats = MatcherStats()
        self._stamps: list[datetime] = []
        self.outage = Outage(log, "the database, for police watches")
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # None: the next sweep starts from the oldest active watch.
        self._swept_from: datetime | None = None
        self._next_sweep = 0.0
        self._retry_s = _RETRY_MIN_S

    # ------------------------------------------------------------------ ingest side

    def on_commit(self, result: CommitResult) -> None:
        """Ingest's commit listener: on the loop, must not block."""
        if self.index.empty or result.stored_at is None:
            return
        self._stamps.append(result.stored_at)
        self._wake.set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="police-watch-matcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def refresh(self) -> None:
        """Rebuilds the index and sweeps now: the routes await it after a
        watch is set or withdrawn, so the new index serves the next batch.
        A failure is logged and left to the task's next sweep."""
        async with self._lock:
            try:
                await self._sweep()
            except Exception as exc:  # noqa: BLE001 - the periodic sweep retries
                self._failed(exc, "refresh")

    async def _run(self) -> None:
        while True:
            timeout = max(0.0, self._next_sweep - time.monotonic())
            if not self._stamps:
                await wait_event(self._wake, timeout)
            self._wake.clear()
            async with self._lock:
                try:
                    if self._stamps:
                        await self._match_stamps()
                    if time.monotonic() >= self._next_sweep:
                        await self._sweep()
                except Exception as exc:  # noqa: BLE001 - a sweep soon covers what was missed
                    self._failed(exc, "match")

    def _failed(self, exc: Exception, what: str) -> None:
        self.stats.failures += 1
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            # The database is away: once when it goes, once when it is back.
            self.outage.failed(exc)
        else:
            log.warning("watch %s failed, sweeping again in %.0f s: %s", what, self._retry_s, brief(exc))
        self._next_sweep = time.monotonic() + self._retry_s
        self._retry_s = min(_RETRY_MAX_S, self._retry_s * 2)

    async def _match_stamps(self) -> None:
        stamps, self._stamps = self._stamps, []
        index = self.index
        if index.empty:
            return
        # On failure the stamps are dropped: the sweep that _failed brings
        # forward reads everything stored since the last good sweep began.
        raised = await asyncio.to_thread(self._match_sync, index, stamps)
        self.stats.fast_matches += 1
        self._raised(raised)

    def _match_sync(self, index: WatchIndex, stamps: list[datetime]) -> int:
        with self.engine.connect() as conn:
            sightings = find_sightings(conn, index, stored_at=stamps)
        if not sightings:
            return 0
        with write_transaction(self.engine) as conn:
            return raise_alerts(conn, sightings, datetime.now(UTC))

    async def _sweep(self) -> None:
        started = datetime.now(UTC)
        since = self._swept_from - SWEEP_OVERLAP if self._swept_from is not None else None
        index, raised = await asyncio.to_thread(self._sweep_sync, since)
        self.index = index
        self._swept_from = started
        self.stats.sweeps += 1
        self.outage.ok()
        self._next_sweep = time.monotonic() + self.sweep_interval_s
        self._retry_s = _RETRY_MIN_S
        self._raised(raised)

    def _sweep_sync(self, since: datetime | None) -> tuple[WatchIndex, int]:
        with self.engine.connect() as conn:
            index = load_index(conn)
            start = since if since is not None else index.oldest
            sightings = find_sightings(conn, index, stored_since=start) if start is not None else []
        if not sightings:
            return index, 0
        with write_transaction(self.engine) as conn:
            return index, raise_alerts(conn, sightings, datetime.now(UTC))

    def _raised(self, raised: int) -> None:
        if raised:
            self.stats.alerts_raised += raised
            self.on_alerts()


MATCHER = web.AppKey("rentgate_police_watch_matcher", WatchMatcher)
