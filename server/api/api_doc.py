"""What the event, gateway and probe routes answer and the query parameters
they read, for the OpenAPI document (server/web/openapi.py). The models
describe the dicts server/api/queries.py builds; they never build them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from rentgate import wire
from server.api.params import MAX_LIMIT
from server.web.openapi import GATEWAY_SCHEMA, Out, Param, enum_query, int_query, text_query


class Credential(Out):
    format: str
    value: str


class Event(Out):
    id: int
    gateway_id: str
    seq: int
    kind: str
    device: str
    door: str | None
    occurred_at: datetime
    received_at: datetime | None
    stored_at: datetime | None
    credential: Credential | None
    data: dict[str, object] | None


class EventPage(Out):
    events: list[Event]
    next: str | None


class Gateway(Out):
    id: str
    online: bool | None
    first_seen: datetime | None
    last_seen: datetime | None
    status_at: datetime | None
    version: str | None
    outbox_depth: int | None
    oldest_unsent_age_s: float | None
    dropped_total: int | None
    rejected_total: int | None
    devices_online: int | None
    devices_total: int | None
    allowlist_version: int | None
    max_seq: int | None
    open_gaps: int


class GatewayList(Out):
    gateways: list[Gateway]


class DeadLetter(Out):
    id: int
    received_at: datetime


class DeadLetterPage(Out):
    dead_letters: list[DeadLetter]
    next: str | None


class Gap(Out):
    id: int
    gateway_id: str
    detected_at: datetime | None
    last_requested_at: datetime | None
    closed_at: datetime | None


class GapPage(Out):
    gaps: list[Gap]
    next: str | None


class Health(Out):
    status: Literal["ok", "unhealthy"]
    database: Literal["ok", "unreachable"]
    mqtt: Literal["connected", "disconnected", "disabled"]
    ingest: Literal["ok", "commit_failing"] | None = None


TIME = {"type": "string", "format": "date-time", "maxLength": 40}
PAGE = (int_query("limit", "how many at most (default 100)", hi=MAX_LIMIT),
        int_query("after", "the cursor a previous page answered as `next`", lo=0))
EVENT_QUERY = (
    Param("gateway", GATEWAY_SCHEMA, "one gateway's events"),
    text_query("door", "one door's events", max_length=64),
    text_query("device", "one device's events", max_length=64),
    enum_query("kind", "one kind of event", wire.EVENT_KINDS),
    Param("since", TIME, "events that occurred at or after this time (with a zone)"),
    Param("until", TIME, "events that occurred before this time (with a zone)"),
    *PAGE,
)
GAP_QUERY = (Param("gateway", GATEWAY_SCHEMA, "one gateway's gaps"), *PAGE)
