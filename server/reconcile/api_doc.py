"""What the reconciliation routes answer and the query parameters they
read, for the OpenAPI document (server/web/openapi.py). The models
describe the dicts server/reconcile/cases.py and rates.py build; they
never build them."""

from __future__ import annotations

from datetime import date, datetime

from server.db.models import CASE_KINDS, CASE_STATES
from server.web.openapi import Out, enum_query, int_query, text_query

LEVELS = ("district", "street", "community", "grid")


class Case(Out):
    id: int
    kind: str
    subject: str
    state: str
    building_id: int | None
    unit_id: int | None
    person_id: int | None
    registration_id: int | None
    credential_id: int | None
    opened_at: datetime
    due_at: datetime | None
    acknowledged_at: datetime | None
    closed_at: datetime | None
    resolution: str | None
    evidence: dict[str, object] | None
    updated_at: datetime | None


class CaseEvent(Out):
    at: datetime
    actor: str
    action: str
    changes: dict[str, object] | None


class CaseDetail(Case):
    history: list[CaseEvent]


class CasePage(Out):
    items: list[Case]
    next_before_id: int | None


class Ratio(Out):
    numerator: int
    denominator: int
    value: float | None


class AreaRates(Out):
    code: str
    level: str
    name: str
    parent_code: str | None
    registration: Ratio
    rental: Ratio
    consistency: Ratio
    pledge: Ratio


class RateList(Out):
    items: list[AreaRates]


class RateDay(Out):
    day: date


class RateHistory(Out):
    code: str
    items: list[RateDay]


class EngineStatus(Out):
    running: bool
    # The rest only while the reconciler runs.
    events_reconciled: int | None = None
    open_cases: dict[str, int] | None = None


CASE_QUERY = (enum_query("state", "cases in this state (active: open or acknowledged)", (*CASE_STATES, "active")),
              enum_query("kind", "cases of this kind", CASE_KINDS),
              int_query("limit", "how many at most (default 100)", hi=1000),
              int_query("before_id", "the next page: the last id of the previous one"))
RATE_QUERY = (enum_query("level", "every area of this level", LEVELS),
              text_query("code", "one area, by its code", max_length=32))
RATE_HISTORY_QUERY = (text_query("code", "the area's code", max_length=32, required=True),
                      int_query("days", "how many days back (default 30)", hi=3660))
