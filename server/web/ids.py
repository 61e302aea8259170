"""Ids as the database holds them. Every id column is a signed 64-bit
integer (BigInteger on PostgreSQL, INTEGER on SQLite), so an id outside
1..2^63-1 names nothing and must never reach a query: the drivers raise
OverflowError or NumericValueOutOfRange, which would be a 500."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

MAX_ID = 2**63 - 1
# 2^63-1 has 19 digits; anything longer is out of range before int() runs.
_MAX_DIGITS = 19

# A pydantic field for an id in a JSON body: a JSON integer (not "5", not
# 5.0, not true) within what the database holds.
DbId = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]


def parse_id(raw: str) -> int | None:
    """``raw`` as an id, or None. ASCII digits only: ``int()`` and the
    router's ``\\d`` also accept Arabic-Indic or full-width digits, which
    would let one object answer to many spellings."""
    if not raw or len(raw) > _MAX_DIGITS or not (raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ID else None


def json_id(value: object) -> int | None:
    """A decoded JSON value as an id, or None (bool is an int in Python)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 1 <= value <= MAX_ID else None
