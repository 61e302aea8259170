"""Police watches: an identity number a police client flags for a bounded
time, with a purpose; while the watch is active, every door that reads one
of that person's cards raises an alert (server/police/watch_matcher.py) that
is delivered to the client's webhook (server/police/webhooks.py).
docs/police-watches.md describes the lifecycle.

What is stored of the person: the keyed digest of the number (the one
``persons.id_digest`` holds, so the matcher finds the person's cards) and
the masked number for the client's list; never the number. Both are set to
NULL when the watch ends (expired or withdrawn), so an ended watch holds no
personal data: its purpose, times and alert count stay for the audit.

Synchronous functions on a connection: callers run them in a worker thread."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.db.models import police_alerts, police_principals, police_watches, users
from server.web.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)

# Active watches one client may hold at once: far above a police force's
# real use, low enough that the matcher's in-memory index stays small and a
# runaway client script cannot turn every door into a tracker.
ACTIVE_WATCHES_MAX = 1000
LIST_MAX = 1000
LIST_DEFAULT = 200
STATES = ("active", "expired", "withdrawn")
# Public ids: 16 random bytes, URL-safe (22 characters, the column holds 32).
_PUBLIC_ID_BYTES = 16
PUBLIC_ID_PATTERN = r"^[A-Za-z0-9_-]{22}$"


class TooManyWatches(Conflict):
    """The client holds ACTIVE_WATCHES_MAX active watches (409)."""


class NoWebhook(InvalidInput):
    """The client has no webhook URL to deliver alerts to (400)."""


def new_public_id() -> str:
    return secrets.token_urlsafe(_PUBLIC_ID_BYTES)


@dataclass(frozen=True)
class WatchSpec:
    """A validated request for a watch (the route has parsed and bounded it)."""

    user_id: int
    id_digest: str
    id_masked: str
    purpose: dict[str, str]
    expires_at: datetime


def create_watch(conn: sa.Connection, spec: WatchSpec, now: datetime, *,
                 max_active: int | None = None) -> dict[str, Any]:
    """Stores the watch and returns it as the client sees it. Run in a
    write transaction (server/web/transactions.py): the count and the
    insert must not interleave with another create of the same client."""
    p = police_principals.c
    # Locks the client's row on PostgreSQL, so two creates of one client
    # count one after the other (SQLite's BEGIN IMMEDIATE already does).
    principal = conn.execute(sa.select(p.webhook_url, p.kind).where(p.user_id == spec.user_id)
                             .with_for_update()).first()
    if principal is None or not principal.webhook_url:
        raise NoWebhook("webhook_url", "this police client has no webhook URL to deliver alerts to; "
                                       "the administrator must set one before it can set watches")
    w = police_watches.c
    # Two watches of one client on one number would deliver every sighting
    # twice: the client is told which watch it already has.
    same = conn.execute(sa.select(w.public_id).where(w.user_id == spec.user_id, w.state == "active",
                                                     w.id_digest == spec.id_digest)).scalar()
    if same is not None:
        raise Conflict(f"this client already watches this number (watch {same}); withdraw it to set a new one")
    max_active = ACTIVE_WATCHES_MAX if max_active is None else max_active
    active = conn.execute(sa.select(sa.func.count()).select_from(police_watches)
                          .where(w.user_id == spec.user_id, w.state == "active")).scalar_one()
    if active >= max_active:
        raise TooManyWatches(f"this client already has {active} active watches, the most allowed is "
                             f"{max_active}; withdraw one first")
    public_id = new_public_id()
    conn.execute(police_watches.insert().values(
        public_id=public_id, user_id=spec.user_id, state="active", id_digest=spec.id_digest,
        id_masked=spec.id_masked, purpose=spec.purpose, created_at=now, expires_at=spec.expires_at, alerts=0))
    return {"id": public_id, "state": "active", "id_masked": spec.id_masked,
            "purpose": _shown_purpose(spec.purpose), "created_at": now, "expires_at": spec.expires_at,
            "ended_at": None, "alerts": 0, "alerts_delivered": 0, "alerts_pending": 0}


def _shown_purpose(purpose: dict[str, Any]) -> dict[str, Any]:
    """What the list shows of the stored purpose record."""
    return {"code": purpose.get("code"), "case_ref": purpose.get("case_ref"),
            "legal_basis": purpose.get("legal_basis")}


_WATCH_COLUMNS = (police_watches.c.id, police_watches.c.public_id, police_watches.c.state,
                  police_watches.c.id_masked, police_watches.c.purpose, police_watches.c.created_at,
                  police_watches.c.expires_at, police_watches.c.ended_at, police_watches.c.alerts)


def _pending_counts(conn: sa.Connection, watch_ids: list[int]) -> dict[int, int]:
    if not watch_ids:
        return {}
    a = police_alerts.c
    rows = conn.execute(sa.select(a.watch_id, sa.func.count()).where(
        a.watch_id.in_(sa.bindparam("ids", expanding=True)), a.delivered_at.is_(None)).group_by(a.watch_id),
        {"ids": watch_ids})
    return {int(wid): int(n) for wid, n in rows}


def _as_json(row: Any, pending: int) -> dict[str, Any]:
    alerts = int(row.alerts)
    return {"id": row.public_id, "state": row.state, "id_masked": row.id_masked,
            "purpose": _shown_purpose(row.purpose or {}), "created_at": row.created_at,
            "expires_at": row.expires_at, "ended_at": row.ended_at, "alerts": alerts,
            # Alert rows are only ever removed once delivered (or when the
            # client itself is revoked), so raised minus pending is what
            # the client acknowledged.
            "alerts_delivered": max(0, alerts - pending), "alerts_pending": pending}


def list_watches(conn: sa.Connection, user_id: int, *, state: str | None = None,
                 limit: int = LIST_DEFAULT) -> list[dict[str, Any]]:
    """The client's own watches, newest first."""
    w = police_watches.c
    query = sa.select(*_WATCH_COLUMNS).where(w.user_id == user_id)
    if state is not None:
        query = query.where(w.state == state)
    rows = conn.execute(query.order_by(w.created_at.desc(), w.id.desc()).limit(min(limit, LIST_MAX))).all()
    pending = _pending_counts(conn, [int(r.id) for r in rows])
    return [_as_json(r, pending.get(int(r.id), 0)) for r in rows]


def _end(conn: sa.Connection, where: sa.ColumnElement[bool], state: str, now: datetime) -> list[int]:
    """Ends the active watches ``where`` selects, erasing what named the person."""
    w = police_watches.c
    ended = conn.execute(police_watches.update().where(w.state == "active", where)
                         .values(state=state, ended_at=now, id_digest=None, id_masked=None)
                         .returning(w.id)).scalars().all()
    return [int(i) for i in ended]


def withdraw_watch(conn: sa.Connection, user_id: int, public_id: str, now: datetime) -> dict[str, Any]:
    """Withdraws the caller's own watch; one that ended already is answered
    as it is. Another client's watch and one that does not exist are the
    same NotFound: public ids name nothing outside the caller's own."""
    w = police_watches.c
    _end(conn, sa.and_(w.public_id == public_id, w.user_id == user_id), "withdrawn", now)
    row = conn.execute(sa.select(*_WATCH_COLUMNS).where(w.public_id == public_id, w.user_id == user_id)).first()
    if row is None:
        raise NotFound("watch")
    return _as_json(row, _pending_counts(conn, [int(row.id)]).get(int(row.id), 0))


@dataclass(frozen=True)
class Expiry:
    expired: int
    revoked: int
    alerts_removed: int

    @property
    def changed(self) -> bool:
        return bool(self.expired or self.revoked)


def expire_watches(conn: sa.Connection, now: datetime) -> Expiry:
    """The periodic clean-up, in one transaction:

    - active watches past ``expires_at`` become ``expired``; watches of a
      client that was revoked or disabled become ``withdrawn``; both lose
      their digest and masked number;
    - alerts of ended watches that were delivered are deleted: a sighting
      outlives its watch only until the client has it;
    - undelivered alerts of a revoked or disabled client are deleted: there
      is nobody left to deliver them to.

    Undelivered alerts of an ended watch of a client in good standing are
    kept and still delivered (they were raised while it was active)."""
    w, p, u, a = police_watches.c, police_principals.c, users.c, police_alerts.c
    expired = _end(conn, w.expires_at <= now, "expired", now)
    gone = sa.select(u.id).select_from(users.outerjoin(police_principals, p.user_id == u.id)).where(
        sa.or_(u.disabled_at.is_not(None), p.revoked_at.is_not(None), p.user_id.is_(None)))
    revoked = _end(conn, w.user_id.in_(gone), "withdrawn", now)
    ended_watches = sa.select(w.id).where(w.state != "active")
    removed = conn.execute(police_alerts.delete().where(
        a.watch_id.in_(ended_watches), a.delivered_at.is_not(None))).rowcount
    removed += conn.execute(police_alerts.delete().where(
        a.delivered_at.is_(None), a.watch_id.in_(sa.select(w.id).where(w.user_id.in_(gone))))).rowcount
    if expired or revoked:
        log.info("watches ended: %d expired, %d of revoked clients", len(expired), len(revoked))
    return Expiry(len(expired), len(revoked), int(removed or 0))


def expires_in(days: int | None, until: datetime | None, now: datetime, max_days: int) -> datetime:
    """The end of a new watch from ``days`` or ``until`` (exactly one),
    bounded by ``police_watch_max_days``."""
    if (days is None) == (until is None):
        raise InvalidInput("days", "give exactly one of days or until")
    if days is not None:
        if not 1 <= days <= max_days:
            raise InvalidInput("days", f"must be 1 to {max_days} (police_watch_max_days)")
        return now + timedelta(days=days)
    assert until is not None
    if until <= now:
        raise InvalidInput("until", "is not in the future")
    if until > now + timedelta(days=max_days):
        raise InvalidInput("until", f"is more than {max_days} days ahead (police_watch_max_days)")
    return until


def next_expiry(conn: sa.Connection) -> datetime | None:
    """When the next active watch ends by itself."""
    w = police_watches.c
    found: datetime | None = conn.execute(sa.select(sa.func.min(w.expires_at)).where(w.state == "active")).scalar()
    return found
