"""What the registry's routes answer and the query parameters they read,
for the OpenAPI document (server/web/openapi.py). These models describe
the dicts server/registry/queries.py and service.py build; they are never
used to build them. docs/registry-api.md shows examples of each."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from server.registry.queries import HISTORY_ENTITIES
from server.web.openapi import Out, Published, enum_query, int_query, text_query

Level = Literal["district", "street", "community", "grid"]
Status = Literal["pending", "active", "ended", "rejected"]
Grade = Literal["trusted", "normal", "watch", "strict"]
MAX_LIMIT = 1000
LIMIT = int_query("limit", "how many at most (default 200)", hi=MAX_LIMIT)


class Area(Out):
    id: int
    level: Level
    code: str
    name: str
    parent_code: str | None
    # Only in the whole tree (GET /api/v1/areas without ?parent=).
    children: list[Area] | None = None


class AreaList(Out):
    areas: list[Area]


class Building(Out):
    id: int
    name: str
    code: str | None
    address: str | None
    grid_code: str | None
    landlord_name: str | None
    landlord_phone: str | None
    landlord_user_id: int | None
    is_rental: bool
    pledge_signed_at: datetime | None
    rooms: int | None
    # Not in the answer to a PATCH.
    created_at: datetime | None = None
    updated_at: datetime | None = None


class BuildingList(Out):
    buildings: list[Building]


class UnitBrief(Out):
    id: int
    building_id: int
    number: str
    floor: int | None
    area_m2: float
    rooms: int
    capacity: int


class UnitInBuilding(UnitBrief):
    grade: Grade | None
    grade_score: float | None
    grade_at: datetime | None
    occupants: int
    open_cases: int


class BuildingDetail(Building):
    units: list[UnitInBuilding]


class Occupant(Out):
    registration_id: int
    status: Status
    source: str
    arrived_at: datetime
    person_id: int
    name: str
    id_masked: str


class UnitCredential(Out):
    id: int
    format: str
    value: str
    person_id: int | None
    registration_id: int | None
    issued_at: datetime


class UnitDetail(UnitBrief):
    grade: Grade | None
    grade_score: float | None
    grade_at: datetime | None
    created_at: datetime
    updated_at: datetime
    open_cases: int
    occupant_count: int
    occupants: list[Occupant]
    credentials: list[UnitCredential]


class RegistrationCredential(Out):
    id: int
    format: str
    value: str
    issued_at: datetime
    revoked_at: datetime | None


class Registration(Out):
    id: int
    person_id: int
    name: str
    id_masked: str
    building_id: int
    unit_id: int
    unit_number: str
    status: Status
    source: str
    arrived_at: datetime
    departed_at: datetime | None
    end_reason: str | None
    confirmed_at: datetime | None
    confirmed_by: int | None
    created_at: datetime
    credentials: list[RegistrationCredential]


class RegistrationList(Out):
    registrations: list[Registration]


class PersonFound(Out):
    id: int
    masked: str
    name: str


class PersonDetail(Out):
    id: int
    name: str
    id_masked: str
    sex: Literal["M", "F"] | None
    birth_year: int | None
    phone: str | None
    origin: str | None
    created_at: datetime
    updated_at: datetime
    registrations: list[Registration]


class Registered(Published):
    id: int
    person_id: int
    person_masked: str
    unit_id: int
    building_id: int
    arrived_at: datetime
    status: Status
    source: str
    credential_id: int | None


class Ended(Published):
    id: int
    status: Literal["ended"]
    departed_at: datetime
    reason: str
    revoked_credentials: int


class Confirmed(Out):
    id: int
    status: Literal["active"]
    confirmed_at: datetime
    allowlist_versions: dict[str, int]


class Rejected(Out):
    id: int
    status: Literal["rejected"]
    reason: str


class Declared(Out):
    id: int
    status: Literal["pending"]
    unit_id: int
    arrived_at: datetime
    person_masked: str


class CardIssued(Published):
    id: int
    format: str
    value: str
    unit_id: int
    person_id: int | None
    registration_id: int | None
    issued_at: datetime
    action: Literal["issued", "linked"]


class CardRevoked(Published):
    id: int
    revoked_at: datetime
    reason: str


class HistoryEntry(Out):
    id: int
    at: datetime
    actor: str
    entity: str
    entity_id: int
    action: str
    changes: dict[str, object] | None


class HistoryList(Out):
    history: list[HistoryEntry]


AREA_PARENT = text_query("parent", "an area's code: its children, flat (else the whole tree)", max_length=32)
BUILDING_QUERY = (text_query("grid", "a grid's code", max_length=32),
                  int_query("landlord", "a landlord's user id (a landlord may give only their own)"), LIMIT)
REGISTRATION_QUERY = (enum_query("status", "only registrations in this state", ("pending", "active", "ended",
                                                                                 "rejected")), LIMIT)
HISTORY_QUERY = (enum_query("entity", "the kind of thing (a landlord must give one)", HISTORY_ENTITIES),
                 int_query("entity_id", "its id (a landlord must give one)"), LIMIT)
