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
