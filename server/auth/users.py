"""User accounts: creation, password checks, listing and disabling."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from server.auth.passwords import DUMMY_HASH, MIN_PASSWORD_LENGTH, hash_password, verify_password
from server.auth.policy import ROLES, AuthUser
from server.db.models import User
from server.web.errors import Conflict, InvalidInput, NotFound

_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


@dataclass(frozen=True)
class UserRow:
    id: int
    username: str
    role: str
    display_name: str
    phone: str | None
    created_at: datetime
    disabled_at: datetime | None


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")


def create_user(conn: sa.Connection, now: datetime, *, username: str, password: str, role: str,
                display_name: str, phone: str | None = None) -> int:
    if not _USERNAME.match(username):
        raise InvalidInput("username", "1-64 letters, digits or _.@-")
    if role not in ROLES:
        raise InvalidInput("role", f"one of {', '.join(ROLES)}")
    check_password(password)
    if conn.execute(sa.select(User.id).where(User.username == username)).first() is not None:
        raise Conflict(f"user {username} already exists")
    result = conn.execute(sa.insert(User).values(
        username=username, password_hash=hash_password(password), role=role,
        display_name=display_name or username, phone=phone, created_at=now,
    ).returning(User.id))
    return int(result.scalar_one())


_COLUMNS = (User.id, User.username, User.role, User.display_name, User.phone, User.created_at, User.disabled_at)


def authenticate(conn: sa.Connection, username: str, password: str) -> AuthUser | None:
    """The user if the password matches and the account is enabled."""
    row = conn.execute(sa.select(User.password_hash, User.disabled_at, User.id, User.username, User.role,
                                 User.display_name).where(User.username == username)).first()
    if row is None:
        verify_password(password, DUMMY_HASH)
        return None
    if not verify_password(password, row.password_hash) or row.disabled_at is not None:
        return None
    return AuthUser(id=int(row.id), username=row.username, role=row.role, display_name=row.display_name)


def get_user(conn: sa.Connection, username: str) -> UserRow:
    row = conn.execute(sa.select(*_COLUMNS).where(User.username == username)).first()
    if row is None:
        raise NotFound("user", username)
    return UserRow(*row)


def list_users(conn: sa.Connection) -> list[UserRow]:
    return [UserRow(*row) for row in conn.execute(sa.select(*_COLUMNS).order_by(User.username))]


def disable_user(conn: sa.Connection, now: datetime, username: str) -> UserRow:
    """Disables the account and ends all its sessions and tokens at once."""
    from server.auth.sessions import end_user_sessions

    user = get_user(conn, username)
    if user.disabled_at is None:
        conn.execute(sa.update(User).where(User.id == user.id).values(disabled_at=now))
    end_user_sessions(conn, user.id)
    return get_user(conn, username)


def set_password(conn: sa.Connection, username: str, password: str) -> None:
    check_password(password)
    user = get_user(conn, username)
    conn.execute(sa.update(User).where(User.id == user.id).values(password_hash=hash_password(password)))
