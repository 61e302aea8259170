"""Delivers watch alerts to each police client's webhook, signed.

Each undelivered alert is POSTed to the ``webhook_url`` of the client that
set its watch, with a JSON body (``alert_body``) signed with Ed25519
(server/police/signing_key.py): ``X-Rentgate-Signature: t=<unix>,kid=<key
id>,sig=<base64>`` over ``<t>.<body>``. A 2xx answer marks it delivered;
anything else (another status, a redirect, which is never followed, a
connection error, no answer within 5 s) schedules another attempt after an
exponential backoff with jitter, capped at 5 minutes, for as long as it
takes: ``attempts`` counts them and ``last_error`` says what went wrong
(a status or an error class, never the URL or an answer's body).

**Order.** Alerts of one watch go out one at a time in the order they were
raised: only the oldest undelivered alert of a watch (its *head*) is ever
sent, so a receiver that was down gets a watch's sightings in order.

**State in the table.** Nothing lives only in memory: an attempt first
*claims* its alert by moving ``next_attempt_at`` a lease ahead (60 s) in a
committed transaction, so a second server process does not send it too,
and a process that dies mid-attempt leaves an alert that is due again when
the lease runs out. A restart resumes where the table says.

**Audit.** A delivered alert tells a client where its watched person was:
the transaction that marks it delivered appends a ``police.watch_alert``
entry to the audit log (the client, the watch, its purpose, the alert id).

**Concurrency.** At most ``concurrency`` (8) requests are in flight, through
one connection pool; a slow receiver holds one slot per watch, not the
deliverer. The task wakes when the matcher raises alerts, when an attempt
ends, when the next retry is due, and every 10 s for alerts another
process raised."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from rentgate.aio import wait_event
from server.audit.entries import AuditEntry
from server.audit.log import AuditLog
from server.auth.scopes import scope_buildings
from server.db.models import buildings, police_alerts, police_principals, police_watches, users
from server.police.signing_key import SIGNATURE_HEADER, WebhookKey
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
LEASE = timedelta(seconds=60)
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 300.0
CONCURRENCY = 8
IDLE_POLL_S = 10.0
STOP_GRACE_S = 2.0
ERROR_MAX = 300
ALERT_TYPE = "rentgate.watch.alert"
USER_AGENT = "rentgate-webhooks/1"


def backoff_s(attempts: int, *, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S,
              rng: Callable[[], float] = random.random) -> float:
    """The wait after the ``attempts``-th failed attempt: base, 2 base, 4
    base, ... up to ``cap``, each drawn from its upper half (jitter), so
    many alerts that failed together do not come back together."""
    ceiling = min(cap, base * float(2 ** max(0, min(attempts - 1, 30))))
    return ceiling * (0.5 + 0.5 * rng())


def alert_body(row: Any, in_jurisdiction: bool) -> bytes:
    """The exact bytes POSTed (and signed). No identity number, masked or
    not: the client knows whom its watch is on by the watch id."""
    place: dict[str, Any] = {"in_jurisdiction": in_jurisdiction}
    if in_jurisdiction:
        place.update(building_code=row.building_code, address=row.address or row.building_name)
    purpose = row.purpose or {}
    doc = {
        "type": ALERT_TYPE,
        "alert_id": row.alert_public_id,
        "watch_id": row.watch_public_id,
        "event": "card_read",
        "seen_at": _iso(row.seen_at),
        "raised_at": _iso(row.created_at),
        # Outside the client's jurisdiction (changed since the alert was
        # raised: none is raised there) neither the building nor the door.
        "door": row.door if in_jurisdiction else None,
        "place": place,
        "purpose": {"code": purpose.get("code"), "case_ref": purpose.get("case_ref")},
    }
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Delivery:
    alert_id: int
    public_id: str
    attempt: int
    url: str | None
    body: bytes
    # Why it cannot be sent at all (no URL, client revoked): recorded as the attempt's error.
    refused: str | None = None
    # For the audit entry of a delivered alert.
    actor: str = ""
    watch_public_id: str = ""
    purpose: dict[str, str] = field(default_factory=dict)

    def audit_entry(self, status: int) -> AuditEntry:
        """A delivered alert tells a police client where its watched person
        was: a disclosure, audited like an answer (docs/audit.md)."""
        return AuditEntry(actor=self.actor, action="police.watch_alert", subject=f"watch:{self.watch_public_id}",
                          status=status, purpose=self.purpose, size=1,
                          detail={"alert_id": self.public_id, "attempt": self.attempt})


@dataclass(frozen=True)
class Claimed:
    deliveries: list[Delivery]
    # When the next head not claimed now is due (None: nothing waits).
    next_due: datetime | None


_HEADS = (sa.select(police_alerts.c.watch_id, sa.func.min(police_alerts.c.id).label("id"))
          .where(police_alerts.c.delivered_at.is_(None)).group_by(police_alerts.c.watch_id).subquery("heads"))


def claim_due(conn: sa.Connection, now: datetime, limit: int) -> Claimed:
    """Claims up to ``limit`` due heads (leasing them) and builds their
    requests. In a write transaction."""
    a = police_alerts.c
    heads = conn.execute(sa.select(a.id, a.attempts, a.next_attempt_at).join(_HEADS, _HEADS.c.id == a.id)
                         .order_by(a.next_attempt_at, a.id).limit(limit + 1)).all()
    due = [h for h in heads if h.next_attempt_at <= now][:limit]
    waiting = [h.next_attempt_at for h in heads if h.next_attempt_at > now]
    next_due = min(waiting) if waiting else None
    if len(heads) > limit and not waiting:
        next_due = now  # more are due than were claimed
    deliveries = []
    lease_until = now + LEASE
    for head in due:
        claimed = conn.execute(police_alerts.update().where(
            # Still as read: no other process claimed it meanwhile.
            a.id == head.id, a.delivered_at.is_(None), a.attempts == head.attempts, a.next_attempt_at <= now,
        ).values(next_attempt_at=lease_until, attempts=a.attempts + 1)).rowcount
        if claimed:
            deliveries.append(_delivery(conn, int(head.id)))
    return Claimed(deliveries, next_due)


def _delivery(conn: sa.Connection, alert_id: int) -> Delivery:
    a, w, p, u, b = police_alerts.c, police_watches.c, police_principals.c, users.c, buildings.c
    row = conn.execute(
        sa.select(a.id, a.public_id.label("alert_public_id"), a.attempts, a.seen_at, a.created_at, a.door,
                  a.building_id, w.public_id.label("watch_public_id"), w.purpose, w.user_id, p.webhook_url,
                  p.client_id,
                  p.jurisdiction, p.revoked_at, u.disabled_at, b.code.label("building_code"), b.address,
                  b.name.label("building_name"))
        .select_from(police_alerts.join(police_watches, w.id == a.watch_id)
                     .join(users, u.id == w.user_id)
                     .outerjoin(police_principals, p.user_id == w.user_id)
                     .outerjoin(buildings, b.id == a.building_id))
        .where(a.id == alert_id)).one()
    in_jurisdiction = row.building_code is not None or row.building_name is not None
    if in_jurisdiction and row.jurisdiction is not None:
        scope = scope_buildings("police", int(row.user_id))
        in_jurisdiction = scope is None or conn.execute(sa.select(sa.literal(1)).select_from(buildings).where(
            b.id == row.building_id, b.id.in_(scope)).limit(1)).first() is not None
    body = alert_body(row, in_jurisdiction)
    refused = None
    if row.revoked_at is not None or row.disabled_at is not None:
        refused = "the police client is revoked or disabled"
    elif not row.webhook_url:
        refused = "the police client has no webhook_url"
    elif urlsplit(row.webhook_url).scheme not in ("http", "https"):
        refused = "webhook_url is not an http or https URL"
    actor = f"client:{row.client_id}" if row.client_id else f"user:{row.user_id}"
    purpose = {str(k): str(v) for k, v in (row.purpose or {}).items()}
    return Delivery(int(row.id), row.alert_public_id, int(row.attempts), row.webhook_url, body, refused,
                    actor, row.watch_public_id, purpose)


def record_outcome(conn: sa.Connection, delivery: Delivery, error: str | None, now: datetime,
                   retry_in_s: float) -> bool:
    """Delivered, or the next attempt's time and what went wrong. Only the
    attempt that holds the claim writes (``attempts`` still its own);
    returns whether it did."""
    a = police_alerts.c
    mine = sa.and_(a.id == delivery.alert_id, a.attempts == delivery.attempt, a.delivered_at.is_(None))
    if error is None:
        return bool(conn.execute(police_alerts.update().where(mine).values(delivered_at=now, last_error=None))
                    .rowcount)
    return bool(conn.execute(police_alerts.update().where(mine).values(
        next_attempt_at=now + timedelta(seconds=retry_in_s), last_error=error[:ERROR_MAX])).rowcount)


def release(conn: sa.Connection, deliveries: list[Delivery], now: datetime) -> None:
    """Shutting down mid-attempt: the alerts are due again at once (for the
    next start or another process) rather than when their lease ends."""
    a = police_alerts.c
    for d in deliveries:
        conn.execute(police_alerts.update().where(
            a.id == d.alert_id, a.attempts == d.attempt, a.delivered_at.is_(None)).values(next_attempt_at=now))


@dataclass
class DelivererStats:
    delivered: int = 0
    failed_attempts: int = 0
    in_flight: int = 0
    last_errors: list[str] = field(default_factory=list)


class WebhookDeliverer:
    """The named task that sends alerts (see the module's docstring)."""

    def __init__(self, engine: sa.Engine, key: WebhookKey, *, audit: AuditLog | None = None,
                 concurrency: int = CONCURRENCY,
                 timeout_s: float = TIMEOUT_S, backoff_base_s: float = BACKOFF_BASE_S,
                 backoff_cap_s: float = BACKOFF_CAP_S, idle_poll_s: float = IDLE_POLL_S,
                 stop_grace_s: float = STOP_GRACE_S) -> None:
        self.engine = engine
        self.key = key
        self.audit = audit
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.idle_poll_s = idle_poll_s
        self.stop_grace_s = stop_grace_s
        self.stats = DelivererStats()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[asyncio.Task[None], Delivery] = {}
        self._session: aiohttp.ClientSession | None = None

    def wake(self) -> None:
        """Something may be due (the matcher raised alerts); on the loop."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="police-webhook-deliverer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # Attempts under way get a moment to finish and be recorded: one cut
        # after the receiver answered would be sent again after the restart.
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=self.stop_grace_s)
        pending = list(self._inflight.values())
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if pending:
            try:
                await asyncio.wait_for(asyncio.to_thread(self._release_sync, pending), self.stop_grace_s + 5.0)
            except Exception as exc:  # noqa: BLE001 - their leases run out anyway
                log.warning("could not release %d alerts at shutdown: %s", len(pending), exc)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        # One pool for every webhook: bounded, no cookies, no proxy from the
        # environment (the administrator set the URL, not the environment).
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency), cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False, headers={"User-Agent": USER_AGENT})
        failures = 0
        while True:
            self._wake.clear()
            free = self.concurrency - len(self._inflight)
            wait_s = self.idle_poll_s
            if free > 0:
                try:
                    claimed = await asyncio.to_thread(self._claim_sync, free)
                except Exception as exc:  # noqa: BLE001 - the database comes back; alerts wait in the table
                    failures += 1
                    wait_s = min(30.0, 0.5 * 2 ** min(failures, 6))
                    log.warning("cannot read due watch alerts, retrying in %.1f s: %s", wait_s, exc)
                else:
                    failures = 0
                    for delivery in claimed.deliveries:
                        task = asyncio.create_task(self._attempt(delivery), name="police-webhook-attempt")
                        self._inflight[task] = delivery
                        task.add_done_callback(self._attempt_done)
                    if claimed.next_due is not None:
                        wait_s = min(wait_s, max(0.0, (claimed.next_due - datetime.now(UTC)).total_seconds()))
                    if claimed.deliveries and len(claimed.deliveries) == free:
                        wait_s = self.idle_poll_s  # full: an attempt ending wakes the loop
            self.stats.in_flight = len(self._inflight)
            if wait_s > 0:
                await wait_event(self._wake, wait_s)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("webhook attempt failed unexpectedly: %r", exc, exc_info=exc)

    def _claim_sync(self, limit: int) -> Claimed:
        with write_transaction(self.engine) as conn:
            return claim_due(conn, datetime.now(UTC), limit)

    def _release_sync(self, deliveries: list[Delivery]) -> None:
        with write_transaction(self.engine) as conn:
            release(conn, deliveries, datetime.now(UTC))

    async def _attempt(self, delivery: Delivery) -> None:
        status, error = (0, delivery.refused) if delivery.refused else await self._post(delivery)
        if error is None:
            self.stats.delivered += 1
            retry_in = 0.0
        else:
            self.stats.failed_attempts += 1
            self.stats.last_errors = [*self.stats.last_errors[-9:], error]
            retry_in = backoff_s(delivery.attempt, base=self.backoff_base_s, cap=self.backoff_cap_s)
            log.info("watch alert %s: attempt %d failed (%s); next in %.1f s", delivery.public_id,
                     delivery.attempt, error, retry_in)
        delays = iter((0.2, 1.0, 5.0))
        while True:
            try:
                await asyncio.to_thread(self._record_sync, delivery, status, error, retry_in)
                return
            except Exception as exc:  # noqa: BLE001 - unrecorded, the lease brings the alert back
                delay = next(delays, None)
                if delay is None:
                    log.warning("could not record watch alert %s's attempt: %s", delivery.public_id, exc)
                    return
                await asyncio.sleep(delay)

    def _record_sync(self, delivery: Delivery, status: int, error: str | None, retry_in_s: float) -> None:
        with write_transaction(self.engine) as conn:
            recorded = record_outcome(conn, delivery, error, datetime.now(UTC), retry_in_s)
            # In the transaction that marks it delivered: no delivered alert
            # without its entry, and none twice.
            if recorded and error is None and self.audit is not None:
                self.audit.append_in(conn, delivery.audit_entry(status))

    async def _post(self, delivery: Delivery) -> tuple[int, str | None]:
        """The HTTP status (0: none) and None when the receiver acknowledged
        (2xx), else a short error."""
        assert self._session is not None and delivery.url is not None
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: self.key.signature_header(timestamp, delivery.body),
            "X-Rentgate-Alert": delivery.public_id,
            "X-Rentgate-Attempt": str(delivery.attempt),
        }
        try:
            async with self._session.post(delivery.url, data=delivery.body, headers=headers,
                                          allow_redirects=False,
                                          timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as resp:
                if 200 <= resp.status < 300:
                    return resp.status, None
                if 300 <= resp.status < 400:
                    return resp.status, f"HTTP {resp.status}: redirects are not followed"
                return resp.status, f"HTTP {resp.status}"
        except TimeoutError:
            return 0, f"no answer within {self.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            # The class says what failed; its text would repeat the URL.
            return 0, f"connection failed ({type(exc).__name__})"
        except (OSError, ValueError) as exc:
            return 0, f"request failed ({type(exc).__name__})"


DELIVERER = web.AppKey("rentgate_police_webhook_deliverer", WebhookDeliverer)
