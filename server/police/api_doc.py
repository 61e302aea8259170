"""What the police API takes and answers, for the OpenAPI document
(server/web/openapi.py) and for validating bodies. The answer models
describe the dicts server/police/checks.py builds; docs/police.md has
examples of each."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from server.police.purposes import CASE_REF_MAX, LEGAL_BASIS_MAX, PURPOSES
from server.web.ids import DbId
from server.web.openapi import Out, enum_query, text_query
from server.web.times import DATE_OR_TIME, STORABLE_YEAR

PurposeCode = Literal["residence_verification", "rental_inspection", "criminal_investigation", "public_order_case",
                      "fugitive_pursuit", "missing_person", "emergency_rescue"]
assert set(get_args(PurposeCode)) == set(PURPOSES), "api_doc.PurposeCode must list purposes.PURPOSES"
Result = Literal["registered", "evidenced_unregistered", "unknown"]
# An identity number as typed: 18 characters, or with spaces or full-width
# digits a phone keyboard makes (normalised before it is checked).
IdNumberText = Annotated[str, StringConstraints(min_length=15, max_length=40)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PurposeIn(Body):
    """Why the request is made (docs/police.md lists the codes and what each permits)."""

    code: PurposeCode
    legal_basis: Annotated[str, StringConstraints(min_length=2, max_length=LEGAL_BASIS_MAX)]
    case_ref: Annotated[str, StringConstraints(min_length=1, max_length=CASE_REF_MAX)]
    # Required for officers; clients may name the operator.
    badge: Annotated[str, StringConstraints(max_length=16, pattern=r"^[0-9A-Za-z]{4,16}$")] | None = None


class PersonCheckIn(Body):
    purpose: PurposeIn
    id_number: IdNumberText


class AddressCheckIn(Body):
    """Name the address by id (building, or unit) or by the standard
    address code (building_code, with unit_number for one unit)."""

    purpose: PurposeIn
    building: DbId | None = None
    unit: DbId | None = None
    building_code: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    unit_number: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None


Time = Annotated[str, StringConstraints(min_length=10, max_length=40), STORABLE_YEAR, DATE_OR_TIME]


class EventsIn(Body):
    purpose: PurposeIn
    id_number: IdNumberText
    # [from, to): at most 92 days; dates are local midnight in the city's zone.
    from_: Time = Field(alias="from")
    to: Time


class BatchLine(Body):
    """One line of the NDJSON body after the first (which is {"purpose": {...}}).
    A line may also be a bare JSON string: the number."""

    id_number: IdNumberText
    ref: Annotated[str, StringConstraints(max_length=64)] | None = None


class TokenForm(Body):
    grant_type: Literal["client_credentials"]
    client_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    client_secret: Annotated[str, StringConstraints(max_length=128)] | None = None
    scope: Annotated[str, StringConstraints(max_length=100)] | None = None


# ----------------------------------------------------------------- answers


class Place(Out):
    in_jurisdiction: bool
    building_code: str | None = None
    address: str | None = None
    unit: str | None = None


class Seen(Out):
    # None outside the caller's jurisdiction.
    at: datetime | None
    place: Place


class Registered(Out):
    since: datetime
    place: Place


class PastRegistration(Out):
    status: Literal["active", "ended"]
    from_: datetime = Field(alias="from")
    until: datetime | None
    end_reason: str | None
    place: Place


class OpenCase(Out):
    kind: str
    state: str
    opened_at: datetime
    place: Place | None


class PersonCheck(Out):
    id_number: str
    result: Result
    registration: Registered | None
    last_seen: Seen | None = None
    history: list[PastRegistration] | None = None
    open_cases: list[OpenCase] | None = None
    included: list[str]
    withheld: list[str]


class Occupant(Out):
    id_number: str | None
    name: str | None
    since: datetime | None = None
    last_seen_at: datetime | None = None
    days_seen: int | None = None


class UnitOccupants(Out):
    unit: str
    capacity: int
    registered: list[Occupant]
    evidenced: list[Occupant]
    registered_not_evidenced: list[Occupant]
    evidenced_not_registered: list[Occupant]
    unknown_cards: int


class AddressCheck(Out):
    place: Place
    units: list[UnitOccupants]
    full_identity_numbers: bool


class PersonEvent(Out):
    at: datetime
    kind: str
    door: str | None
    decision: str | None
    place: Place


class Events(Out):
    id_number: str
    events: list[PersonEvent]
    truncated: bool


class Token(Out):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str


class PurposeInfo(Out):
    code: str
    zh: str
    en: str
    permits: list[str]


class Purposes(Out):
    purposes: list[PurposeInfo]
    scopes: dict[str, list[str]]


BATCH_REPLY: dict[str, Any] = {
    "type": "string",
    "description": "NDJSON: one line per input line, {\"line\": n, \"ref\"?: str, \"result\": "
                   "registered|evidenced_unregistered|unknown|invalid, \"error\"?: str}, then "
                   "{\"summary\": {...counts}}",
}
PURPOSE_QUERY = (
    enum_query("purpose", "the purpose code", list(PURPOSES), required=True),
    text_query("legal_basis", "the legal basis", max_length=LEGAL_BASIS_MAX, required=True),
    text_query("case_ref", "the case reference", max_length=CASE_REF_MAX, required=True),
    text_query("badge", "the officer's badge number (officers only)", max_length=16),
)
