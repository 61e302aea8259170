"""Police clients (integrating systems) and officers, as an administrator
manages them, and the OAuth2 client-credentials exchange.

A client is a ``users`` row of role ``police`` (its username is the public
client id, its password unusable) plus a ``police_principals`` row. Its
secrets are 256 random bits each, stored as SHA-256: a fast hash is enough
for a secret nobody chose (a slow one protects guessable passwords).
Rotating adds a secret and lets the old ones live for an overlap, so a
client's two instances can switch one after the other. Revoking disables
the user, which ends its tokens at once (every request looks its token up),
deletes its secrets and ends its watches, erasing their identity digests."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa

from server.auth.sessions import end_user_sessions, start_session
from server.db.models import (
    POLICE_SCOPES,
    areas,
    auth_sessions,
    police_client_secrets,
    police_principals,
    police_watches,
    users,
)
from server.web.errors import Conflict, InvalidInput, NotFound

CLIENT_ID_PREFIX = "pc_"
_CLIENT_ID = re.compile(r"pc_[A-Za-z0-9_-]{16,32}")
SECRET_PREFIX = "pcs_"
_SECRET = re.compile(r"pcs_[A-Za-z0-9_-]{40,60}")
# Never matches: scrypt hashes start with "scrypt$" (server/auth/passwords.py).
UNUSABLE_PASSWORD = "!client-credentials-only"
DEFAULT_RATE_PER_MIN = 600
DEFAULT_DAILY_QUOTA = 200_000
TOKEN_LABEL = "oauth"
MAX_RATE_PER_MIN = 100_000
MAX_DAILY_QUOTA = 100_000_000


@dataclass(frozen=True)
class ClientRow:
    client_id: str
    name: str
    scopes: list[str]
    rate_per_min: int
    daily_quota: int
    jurisdiction: str | None
    webhook_url: str | None
    created_at: datetime
    revoked_at: datetime | None
    secrets_live: int


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def well_formed_client_id(value: str) -> bool:
    return _CLIENT_ID.fullmatch(value) is not None


def well_formed_secret(value: str) -> bool:
    return _SECRET.fullmatch(value) is not None


def parse_scopes(raw: str | Iterable[str]) -> list[str]:
    items = [s for s in (raw.replace(",", " ").split() if isinstance(raw, str) else raw) if s]
    unknown = [s for s in items if s not in POLICE_SCOPES]
    if unknown or not items:
        raise InvalidInput("scopes", "one or more of: " + ", ".join(POLICE_SCOPES))
    return sorted(set(items), key=POLICE_SCOPES.index)


def check_webhook(url: str | None) -> str | None:
    if url is None or url == "":
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
        raise InvalidInput("webhook", "an http(s) URL without a password, e.g. https://alerts.example/rentgate")
    if len(url) > 500:
        raise InvalidInput("webhook", "at most 500 characters")
    return url


def check_jurisdiction(conn: sa.Connection, code: str | None) -> str | None:
    if code is None or code == "":
        return None
    if conn.execute(sa.select(areas.c.id).where(areas.c.code == code)).first() is None:
        raise InvalidInput("jurisdiction", "no area has this code; `rentgate registry` imports list the areas")
    return code


def _bounded(value: int, field: str, hi: int) -> int:
    if not 1 <= value <= hi:
        raise InvalidInput(field, f"must be between 1 and {hi}")
    return value


def add_client(conn: sa.Connection, now: datetime, *, name: str, scopes: Iterable[str] | str,
               rate_per_min: int = DEFAULT_RATE_PER_MIN, daily_quota: int = DEFAULT_DAILY_QUOTA,
               jurisdiction: str | None = None, webhook_url: str | None = None) -> tuple[str, str]:
    """A new client; returns (client id, secret). The secret is shown once."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("name", "1 to 200 characters")
    scope_list = parse_scopes(scopes)
    rate = _bounded(rate_per_min, "rate", MAX_RATE_PER_MIN)
    quota = _bounded(daily_quota, "quota", MAX_DAILY_QUOTA)
    jurisdiction = check_jurisdiction(conn, jurisdiction)
    webhook_url = check_webhook(webhook_url)
    client_id = CLIENT_ID_PREFIX + secrets.token_urlsafe(18)
    user_id = int(conn.execute(sa.insert(users).values(
        username=client_id, password_hash=UNUSABLE_PASSWORD, role="police", display_name=name, created_at=now,
    ).returning(users.c.id)).scalar_one())
    conn.execute(sa.insert(police_principals).values(
        user_id=user_id, kind="client", client_id=client_id, scopes=scope_list, rate_per_min=rate,
        daily_quota=quota, jurisdiction=jurisdiction, webhook_url=webhook_url, created_at=now))
    return client_id, _new_secret(conn, now, user_id)


def _new_secret(conn: sa.Connection, now: datetime, user_id: int) -> str:
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    conn.execute(sa.insert(police_client_secrets).values(
        user_id=user_id, secret_digest=secret_digest(secret), created_at=now, expires_at=None))
    return secret


def _client_user(conn: sa.Connection, client_id: str) -> tuple[int, datetime | None]:
    row = conn.execute(sa.select(police_principals.c.user_id, police_principals.c.revoked_at)
                       .where(police_principals.c.client_id == client_id,
                              police_principals.c.kind == "client")).first()
    if row is None:
        raise NotFound("police client")
    return int(row.user_id), row.revoked_at


def rotate_secret(conn: sa.Connection, now: datetime, client_id: str, *, overlap: timedelta) -> str:
    """A new secret; the old ones keep working for ``overlap`` (0: not at all)."""
    user_id, revoked_at = _client_user(conn, client_id)
    if revoked_at is not None:
        raise Conflict("the client is revoked; add a new one")
    until = now + overlap
    s = police_client_secrets.c
    conn.execute(sa.update(police_client_secrets)
                 .where(s.user_id == user_id, sa.or_(s.expires_at.is_(None), s.expires_at > until))
                 .values(expires_at=until))
    conn.execute(sa.delete(police_client_secrets).where(s.user_id == user_id, s.expires_at <= now))
    return _new_secret(conn, now, user_id)


def revoke_client(conn: sa.Connection, now: datetime, client_id: str) -> int:
    """Cuts the client off at once; returns how many watches it ended."""
    user_id, revoked_at = _client_user(conn, client_id)
    if revoked_at is None:
        conn.execute(sa.update(police_principals).where(police_principals.c.user_id == user_id)
                     .values(revoked_at=now))
    conn.execute(sa.update(users).where(users.c.id == user_id, users.c.disabled_at.is_(None))
                 .values(disabled_at=now))
    end_user_sessions(conn, user_id)
    conn.execute(sa.delete(police_client_secrets).where(police_client_secrets.c.user_id == user_id))
    w = police_watches.c
    return int(conn.execute(sa.update(police_watches).where(w.user_id == user_id, w.state == "active")
                            .values(state="withdrawn", ended_at=now, id_digest=None, id_masked=None)).rowcount)


def list_clients(conn: sa.Connection, now: datetime) -> list[ClientRow]:
    p, s = police_principals.c, police_client_secrets.c
    live = (sa.select(sa.func.count()).where(s.user_id == p.user_id,
                                             sa.or_(s.expires_at.is_(None), s.expires_at > now))
            .scalar_subquery())
    rows = conn.execute(sa.select(p.client_id, users.c.display_name, p.scopes, p.rate_per_min, p.daily_quota,
                                  p.jurisdiction, p.webhook_url, p.created_at, p.revoked_at, live)
                        .join(users, users.c.id == p.user_id).where(p.kind == "client")
                        .order_by(p.created_at, p.client_id))
    return [ClientRow(r[0], r[1], list(r[2] or []), int(r[3]), int(r[4]), r[5], r[6], r[7], r[8], int(r[9]))
            for r in rows]


def authenticate_client(conn: sa.Connection, now: datetime, client_id: str, secret: str) -> tuple[int, list[str]] | None:
    """(user id, scopes) when the secret is a live one of this client."""
    s, p = police_client_secrets.c, police_principals.c
    row = conn.execute(
        sa.select(s.user_id, s.expires_at, p.client_id, p.scopes, p.revoked_at, users.c.disabled_at)
        .join(police_principals, p.user_id == s.user_id).join(users, users.c.id == s.user_id)
        .where(s.secret_digest == secret_digest(secret))).first()
    if row is None or not hmac.compare_digest(row.client_id, client_id):
        return None
    if row.revoked_at is not None or row.disabled_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    return int(row.user_id), list(row.scopes or [])


def issue_token(conn: sa.Connection, now: datetime, user_id: int, ttl: timedelta) -> str:
    """A short-lived bearer token; expired ones of the client are removed
    (a token row holds no personal data, but the table must not grow)."""
    conn.execute(sa.delete(auth_sessions).where(auth_sessions.c.user_id == user_id,
                                                auth_sessions.c.expires_at <= now))
    return start_session(conn, now, user_id, kind="token", ttl=ttl, label=TOKEN_LABEL)


def set_officer(conn: sa.Connection, now: datetime, username: str, *, scopes: Iterable[str] | str,
                rate_per_min: int, daily_quota: int, jurisdiction: str | None) -> None:
    """An officer's scopes and limits (their login is a user of role police)."""
    row = conn.execute(sa.select(users.c.id, users.c.role).where(users.c.username == username)).first()
    if row is None or row.role != "police":
        raise NotFound("police user")
    values = {"scopes": parse_scopes(scopes), "rate_per_min": _bounded(rate_per_min, "rate", MAX_RATE_PER_MIN),
              "daily_quota": _bounded(daily_quota, "quota", MAX_DAILY_QUOTA),
              "jurisdiction": check_jurisdiction(conn, jurisdiction)}
    existing = conn.execute(sa.select(police_principals.c.kind).where(police_principals.c.user_id == row.id)).first()
    if existing is None:
        conn.execute(sa.insert(police_principals).values(user_id=row.id, kind="officer", client_id=None,
                                                         created_at=now, **values))
    elif existing.kind != "officer":
        raise Conflict("that account is a client, not an officer")
    else:
        conn.execute(sa.update(police_principals).where(police_principals.c.user_id == row.id).values(**values))
