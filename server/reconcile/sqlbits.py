"""Small SQL pieces that differ between SQLite and PostgreSQL, so that the
rules can be written once as set-based statements."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from server.db.types import UtcDateTime

ACTOR = "system:reconcile"
OPEN_STATES_SQL = "('open', 'acknowledged')"


def is_postgres(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


def greatest(conn: sa.Connection, *args: str) -> str:
    """GREATEST on PostgreSQL; SQLite's multi-argument max() is the scalar
    form. Callers coalesce NULLs away first (SQLite's max() returns NULL)."""
    return f"{'GREATEST' if is_postgres(conn) else 'MAX'}({', '.join(args)})"


def least(conn: sa.Connection, *args: str) -> str:
    return f"{'LEAST' if is_postgres(conn) else 'MIN'}({', '.join(args)})"


def json_object(conn: sa.Connection, pairs: dict[str, str]) -> str:
    """A JSON object built in SQL from column expressions."""
    fn = "jsonb_build_object" if is_postgres(conn) else "json_object"
    args = ", ".join("'" + k + "', " + v for k, v in pairs.items())
    return f"{fn}({args})"


def distinct(conn: sa.Connection, a: str, b: str) -> str:
    return f"{a} IS DISTINCT FROM {b}" if is_postgres(conn) else f"{a} IS NOT {b}"


def ts(name: str) -> sa.BindParameter[datetime]:
    """A typed time parameter (naive UTC text on SQLite, aware on PostgreSQL)."""
    return sa.bindparam(name, type_=UtcDateTime)


def days(value: float) -> timedelta:
    return timedelta(days=value)


def json_array(conn: sa.Connection, *items: str) -> str:
    return f"{'jsonb_build_array' if is_postgres(conn) else 'json_array'}({', '.join(items)})"


def json_text(conn: sa.Connection, expr: str, key: str) -> str:
    """The text of member ``key`` of the JSON object ``expr``."""
    if is_postgres(conn):
        return f"({expr} ->> '{key}')"
    return f"json_extract({expr}, '$.{key}')"


def plus_days(conn: sa.Connection, expr: str, n: int) -> str:
    """A stored time plus whole days, comparable with stored times (SQLite
    keeps them as 'YYYY-MM-DD HH:MM:SS.ffffff' text)."""
    if is_postgres(conn):
        return f"({expr} + INTERVAL '{int(n)} days')"
    return f"strftime('%Y-%m-%d %H:%M:%f', {expr}, '+{int(n)} days')"
