"""Login sessions (cookie) and API tokens (bearer). Both are random tokens
of which only a SHA-256 digest is stored: a copy of the database cannot be
used to log in. The CSRF token is derived from the session token with HMAC,
so it needs no storage and dies with the session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from server.auth.policy import AuthUser
from server.db.models import AuthSession, User

SESSION_COOKIE = "rentgate_session"
# A login lasts at most this long however busy it is.
COOKIE_ABSOLUTE = timedelta(days=7)
# last_seen_at is written at most this often: a write per request would
# serialise every page view on SQLite's single writer.
TOUCH_INTERVAL = timedelta(minutes=1)
KINDS = ("cookie", "token")
_CSRF_CONTEXT = b"rentgate csrf v1"


@dataclass(frozen=True)
class ResolvedSession:
    user: AuthUser
    kind: str
    digest: str
    needs_touch: bool


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def csrf_token(session_token: str) -> str:
    mac = hmac.new(session_token.encode("utf-8"), _CSRF_CONTEXT, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def csrf_matches(session_token: str, offered: str | None) -> bool:
    return offered is not None and hmac.compare_digest(csrf_token(session_token).encode(), offered.encode())


def start_session(conn: sa.Connection, now: datetime, user_id: int, *, kind: str, ttl: timedelta | None,
                  label: str | None = None) -> str:
    """Returns the token; it is not stored and cannot be recovered. A cookie
    session never outlives COOKIE_ABSOLUTE; a token with ttl None never expires."""
    if kind not in KINDS:
        raise ValueError(f"session kind must be one of {KINDS}, not {kind!r}")
    if kind == "cookie":
        ttl = COOKIE_ABSOLUTE if ttl is None else min(ttl, COOKIE_ABSOLUTE)
    token = secrets.token_urlsafe(32)
    conn.execute(sa.insert(AuthSession).values(
        token_digest=token_digest(token), user_id=user_id, kind=kind, label=label, created_at=now,
        expires_at=None if ttl is None else now + ttl, last_seen_at=now,
    ))
    return token


def end_session(conn: sa.Connection, token: str) -> None:
    conn.execute(sa.delete(AuthSession).where(AuthSession.token_digest == token_digest(token)))


def end_user_sessions(conn: sa.Connection, user_id: int, *, kind: str | None = None,
                      label: str | None = None) -> int:
    """Ends a user's sessions (optionally only one kind / one label); returns how many."""
    stmt = sa.delete(AuthSession).where(AuthSession.user_id == user_id)
    if kind is not None:
        stmt = stmt.where(AuthSession.kind == kind)
    if label is not None:
        stmt = stmt.where(AuthSession.label == label)
    return int(conn.execute(stmt).rowcount)


def purge_expired(conn: sa.Connection, now: datetime, user_id: int, *, idle: timedelta) -> None:
    """Deletes the user's dead sessions so the table does not grow with every login."""
    conn.execute(sa.delete(AuthSession).where(
        AuthSession.user_id == user_id,
        sa.or_(AuthSession.expires_at <= now,
               sa.and_(AuthSession.kind == "cookie", AuthSession.last_seen_at <= now - idle)),
    ))


# Built once: every request with a cookie or token runs it, and building a
# select costs more Python than running it.
_SESSION_BY_DIGEST = (
    sa.select(AuthSession.kind, AuthSession.expires_at, AuthSession.last_seen_at, User.id, User.username,
              User.role, User.display_name, User.disabled_at)
    .join(User, User.id == AuthSession.user_id)
    .where(AuthSession.token_digest == sa.bindparam("digest"))
)


def resolve_session(conn: sa.Connection, token: str, now: datetime, *, idle: timedelta) -> ResolvedSession | None:
    """The live session behind a token: one primary-key lookup joined to its user."""
    digest = token_digest(token)
    row = conn.execute(_SESSION_BY_DIGEST, {"digest": digest}).first()
    if row is None or row.disabled_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    last_seen = row.last_seen_at
    if row.kind == "cookie" and last_seen is not None and last_seen + idle <= now:
        return None
    user = AuthUser(id=int(row.id), username=row.username, role=row.role, display_name=row.display_name)
    needs_touch = last_seen is None or now - last_seen >= TOUCH_INTERVAL
    return ResolvedSession(user=user, kind=row.kind, digest=digest, needs_touch=needs_touch)


def touch(conn: sa.Connection, digest: str, now: datetime) -> None:
    conn.execute(sa.update(AuthSession).where(AuthSession.token_digest == digest).values(last_seen_at=now))
