"""Query-string parsing for the API (pure). Every problem is a ParamError,
which the routes turn into a 400."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from rentgate import wire
from server.errors import ServerError
from server.web import times
from server.web.ids import MAX_ID

_OFFSET_SPACE = re.compile(r" (\d\d:?\d\d)$")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class ParamError(ServerError, ValueError):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True, kw_only=True)
class Page:
    limit: int = DEFAULT_LIMIT
    after: int | None = None


@dataclass(frozen=True, kw_only=True)
class EventFilter:
    page: Page
    gateway: str | None = None
    door: str | None = None
    device: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def parse_page(query: Mapping[str, str]) -> Page:
    limit = _int(query, "limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise ParamError("limit", f"must be between 1 and {MAX_LIMIT}")
    after = _int(query, "after", None) if query.get("after") else None
    # A cursor is an id: past 2^63-1 it names nothing, and the driver would raise (a 500).
    if after is not None and not 0 <= after <= MAX_ID:
        raise ParamError("after", "must be a cursor returned as `next`")
    return Page(limit=limit, after=after)


def parse_event_filter(query: Mapping[str, str]) -> EventFilter:
    known = {"gateway", "door", "device", "kind", "since", "until", "limit", "after"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise ParamError(unknown[0], f"unknown parameter; known ones are {', '.join(sorted(known))}")
    kind = query.get("kind") or None
    if kind is not None and kind not in wire.EVENT_KINDS:
        raise ParamError("kind", f"must be one of {', '.join(wire.EVENT_KINDS)}")
    gateway = query.get("gateway") or None
    if gateway is not None and not wire.is_gateway_id(gateway):
        raise ParamError("gateway", "not a valid gateway id")
    since, until = _time(query, "since"), _time(query, "until")
    if since and until and since >= until:
        raise ParamError("until", "must be after since")
    return EventFilter(
        page=parse_page(query), gateway=gateway, kind=kind, since=since, until=until,
        door=_text(query, "door"), device=_text(query, "device"),
    )


def _int(query: Mapping[str, str], name: str, default: int | None) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ParamError(name, "required")
        return default
    # ASCII digits only: int() also takes other scripts' digits, "_" and spaces.
    digits = raw[1:] if raw.startswith("-") else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        raise ParamError(name, f"not an integer: {raw[:40]!r}")
    return int(raw)


def _text(query: Mapping[str, str], name: str) -> str | None:
    raw = query.get(name) or None
    if raw is not None and len(raw) > 64:
        raise ParamError(name, "longer than 64 characters")
    return raw


def _time(query: Mapping[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        # An unencoded "+08:00" arrives as " 08:00".
        value = datetime.fromisoformat(_OFFSET_SPACE.sub(r"+\1", raw.replace("Z", "+00:00")))
    except ValueError:
        raise ParamError(name, f"not an ISO 8601 time: {raw[:40]!r}") from None
    if value.tzinfo is None:
        raise ParamError(name, "needs a time zone, e.g. 2024-05-01T08:00:00+08:00 or ...Z")
    # Year 1 with a positive offset is year 0 in UTC: astimezone would raise (a 500).
    if not times.in_range(value):
        raise ParamError(name, f"must be {times.YEARS}")
    return value.astimezone(UTC)
