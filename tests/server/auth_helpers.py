"""Users and bearer tokens for tests that call protected routes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from server.auth.sessions import start_session
from server.auth.users import create_user

_names = itertools.count(1)


@dataclass(frozen=True)
class UserCreds:
    id: int
    username: str
    password: str
    token: str


def make_user(engine: sa.Engine, role: str = "admin", username: str | None = None,
              password: str = "pw-secret-1") -> UserCreds:
    """A user with a never-expiring bearer token, committed."""
    username = username or f"{role}-{next(_names)}"
    now = datetime.now(UTC)
    with engine.begin() as conn:
        user_id = create_user(conn, now, username=username, password=password, role=role, display_name=username)
        token = start_session(conn, now, user_id, kind="token", ttl=None, label="test")
    return UserCreds(id=user_id, username=username, password=password, token=token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_police_client(engine: sa.Engine, scopes: str = "lookup detail events batch watch",
                       jurisdiction: str | None = None, webhook_url: str | None = None) -> UserCreds:
    """A police API client (every scope by default) with a live bearer token,
    as the OAuth2 endpoint would hand it out."""
    from datetime import timedelta

    from server.police.clients import add_client, issue_token

    now = datetime.now(UTC)
    with engine.begin() as conn:
        client_id, secret = add_client(conn, now, name="test client", scopes=scopes, jurisdiction=jurisdiction,
                                       webhook_url=webhook_url)
        user_id = int(conn.execute(sa.text("SELECT id FROM users WHERE username = :u"), {"u": client_id}).scalar_one())
        token = issue_token(conn, now, user_id, timedelta(hours=1))
    return UserCreds(id=user_id, username=client_id, password=secret, token=token)
