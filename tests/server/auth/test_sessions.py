"""Session and token lifetimes, and what the database holds of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from server.auth.sessions import (
    COOKIE_ABSOLUTE,
    csrf_matches,
    csrf_token,
    end_session,
    resolve_session,
    start_session,
    token_digest,
)
from server.auth.users import create_user
from server.db.models import AuthSession

NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
IDLE = timedelta(hours=12)


def _user(conn: sa.Connection) -> int:
    return create_user(conn, NOW, username="u", password="long-enough", role="admin", display_name="U")


def test_only_a_digest_of_the_token_is_stored(auth_engine: sa.Engine) -> None:
    with auth_engine.begin() as conn:
        token = start_session(conn, NOW, _user(conn), kind="token", ttl=None, label="cron")
        stored = conn.execute(sa.select(AuthSession.token_digest, AuthSession.label)).one()
    assert tuple(stored) == (token_digest(token), "cron") and token not in stored[0]


def test_a_cookie_session_dies_when_idle_and_after_seven_days_however_busy(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        token = start_session(conn, NOW, _user(conn), kind="cookie", ttl=timedelta(days=30))
    with engine.begin() as conn:
        assert resolve_session(conn, token, NOW + IDLE - timedelta(minutes=1), idle=IDLE) is not None
        assert resolve_session(conn, token, NOW + IDLE, idle=IDLE) is None
        # Kept busy: last seen an hour ago, but past the absolute limit (30 days was capped to 7).
        late = NOW + COOKIE_ABSOLUTE
        conn.execute(sa.update(AuthSession).values(last_seen_at=late - timedelta(hours=1)))
        assert resolve_session(conn, token, late - timedelta(seconds=1), idle=IDLE) is not None
        assert resolve_session(conn, token, late, idle=IDLE) is None


def test_a_token_is_not_idle_limited_but_honours_its_own_expiry(auth_engine: sa.Engine) -> None:
    with auth_engine.begin() as conn:
        user_id = _user(conn)
        forever = start_session(conn, NOW, user_id, kind="token", ttl=None)
        week = start_session(conn, NOW, user_id, kind="token", ttl=timedelta(days=7))
    with auth_engine.connect() as conn:
        year = NOW + timedelta(days=365)
        assert resolve_session(conn, forever, year, idle=IDLE) is not None
        assert resolve_session(conn, week, NOW + timedelta(days=6), idle=IDLE) is not None
        assert resolve_session(conn, week, NOW + timedelta(days=7), idle=IDLE) is None


def test_ended_sessions_and_unknown_tokens_resolve_to_nobody(auth_engine: sa.Engine) -> None:
    with auth_engine.begin() as conn:
        token = start_session(conn, NOW, _user(conn), kind="cookie", ttl=None)
        end_session(conn, token)
        assert resolve_session(conn, token, NOW, idle=IDLE) is None
        assert resolve_session(conn, "made-up", NOW, idle=IDLE) is None


def test_csrf_token_is_tied_to_its_session() -> None:
    assert csrf_matches("session-a", csrf_token("session-a"))
    assert not csrf_matches("session-b", csrf_token("session-a"))
    assert not csrf_matches("session-a", None)
    assert csrf_token("session-a") != "session-a"
