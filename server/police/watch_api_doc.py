"""What the watch routes take and answer, for the OpenAPI document
(server/web/openapi.py) and for validating the body of a new watch. The
answer models describe the dicts server/police/watches.py builds;
docs/police-watches.md shows examples."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from server.police.api_doc import PURPOSE_QUERY, Body, IdNumberText, PurposeIn, Time
from server.police.watches import LIST_MAX, PUBLIC_ID_PATTERN, STATES
from server.web.openapi import Out, Param, enum_query, int_query

State = Literal["active", "expired", "withdrawn"]
# More than police_watch_max_days can be (365): the setting bounds it further.
Days = Annotated[int, Field(strict=True, ge=1, le=365)]


class WatchIn(Body):
    """A new watch: the number, why, and for how long (``days`` from now,
    or ``until`` a time; exactly one, at most ``police_watch_max_days``)."""

    purpose: PurposeIn
    id_number: IdNumberText
    days: Days | None = None
    until: Time | None = None


class WatchPurpose(Out):
    code: str
    case_ref: str
    legal_basis: str | None


class Watch(Out):
    id: str
    state: State
    # Null once the watch has ended: nothing naming the person is kept.
    id_masked: str | None
    purpose: WatchPurpose
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    alerts: int
    alerts_delivered: int
    alerts_pending: int


class WatchList(Out):
    watches: list[Watch]


class SigningKey(Out):
    algorithm: Literal["Ed25519"]
    key_id: str
    public_key: str
    public_key_pem: str
    header: str
    header_format: str
    signed_bytes: str
    max_age_s: int


WATCH_ID = Param("watch_id", {"type": "string", "pattern": PUBLIC_ID_PATTERN},
                 "a watch's id, as setting it answered")
LIST_QUERY = (
    *PURPOSE_QUERY,
    enum_query("state", "only watches in this state", STATES),
    int_query("limit", "how many at most, newest first (default 200)", hi=LIST_MAX),
)
