"""Accounts on SQLite and PostgreSQL: creation rules, password checks, disabling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.auth.sessions import resolve_session, start_session
from server.auth.users import authenticate, create_user, disable_user, list_users, set_password
from server.db.models import User
from server.web.errors import Conflict, InvalidInput

NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
IDLE = timedelta(hours=12)


def test_a_created_user_logs_in_with_the_password_only(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        user_id = create_user(conn, NOW, username="wang", password="pw-secret-1", role="landlord",
                              display_name="王房东", phone="13800000000")
    with engine.connect() as conn:
        user = authenticate(conn, "wang", "pw-secret-1")
        assert user is not None and (user.id, user.role, user.display_name) == (user_id, "landlord", "王房东")
        assert authenticate(conn, "wang", "pw-secret-2") is None
        assert authenticate(conn, "nobody", "pw-secret-1") is None
        stored = conn.execute(sa.select(User.password_hash)).scalar_one()
    assert "pw-secret-1" not in stored


@pytest.mark.parametrize("field, kwargs", [
    ("password", {"password": "short7!"}),
    ("role", {"role": "tenant"}),
    ("username", {"username": "has space"}),
])
def test_bad_fields_are_refused_by_name(auth_engine: sa.Engine, field: str, kwargs: dict[str, str]) -> None:
    values = {"username": "li", "password": "long-enough", "role": "admin", "display_name": "Li"} | kwargs
    with auth_engine.begin() as conn, pytest.raises(InvalidInput) as caught:
        create_user(conn, NOW, **values)
    assert caught.value.field == field


def test_usernames_are_unique(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        create_user(conn, NOW, username="zhao", password="long-enough", role="police", display_name="Zhao")
    with engine.begin() as conn, pytest.raises(Conflict):
        create_user(conn, NOW, username="zhao", password="other-enough", role="admin", display_name="Z")


def test_a_disabled_user_cannot_log_in_and_loses_every_session(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        user_id = create_user(conn, NOW, username="chen", password="long-enough", role="coordinator",
                              display_name="Chen")
        token = start_session(conn, NOW, user_id, kind="token", ttl=None, label="script")
    with engine.begin() as conn:
        disable_user(conn, NOW, "chen")
    with engine.connect() as conn:
        assert authenticate(conn, "chen", "long-enough") is None
        assert resolve_session(conn, token, NOW, idle=IDLE) is None
        assert [u.disabled_at is not None for u in list_users(conn)] == [True]


def test_a_new_password_replaces_the_old(auth_engine: sa.Engine) -> None:
    with auth_engine.begin() as conn:
        create_user(conn, NOW, username="sun", password="first-pass", role="admin", display_name="Sun")
        set_password(conn, "sun", "second-pass")
        assert authenticate(conn, "sun", "first-pass") is None
        assert authenticate(conn, "sun", "second-pass") is not None
