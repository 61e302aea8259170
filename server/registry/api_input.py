"""Request bodies of the registry API and the parsing they need: dates a
person types ("2026-03-01", local midnight in the city's zone) or aware
datetimes, identity numbers and card numbers, each failure an InvalidInput
naming the field as the client sent it (``person.id_number``)."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rentgate import wire
from server.registry.idnumber import InvalidIdNumber, parse_id_number
from server.registry.service import EM4100
from server.web.errors import InvalidInput

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=32)]
Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32,
                                          pattern=r"^[a-z][a-z0-9_]*$")]
# A date ("2026-03-01") or an ISO datetime with a zone; parsed by when().
When = Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=40)]
CredentialFormat = Literal["em4100", "wiegand26", "wiegand34", "osdp_raw", "terminal_person", "raw"]
CredentialValue = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Arrivals a day ahead are accepted (a landlord registering tonight's tenant
# in another zone's idea of today); anything later is a typing mistake.
FUTURE_SLACK = timedelta(days=1)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AreaIn(Body):
    level: Literal["district", "street", "community", "grid"]
    code: Code
    name: Name
    parent_code: Code | None = None


class BuildingIn(Body):
    name: Name
    code: Code | None = None
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)] | None = None
    grid_code: Code | None = None
    landlord_name: Short | None = None
    landlord_phone: Phone | None = None
    landlord_username: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    is_rental: bool = False
    pledge_signed_at: When | None = None
    rooms: Annotated[int, Field(ge=0, le=100_000)] | None = None


class BuildingPatch(BuildingIn):
    name: Name | None = None  # type: ignore[assignment]
    is_rental: bool | None = None  # type: ignore[assignment]


class UnitIn(Body):
    number: Code
    area_m2: Annotated[float, Field(gt=0, le=100_000)]
    rooms: Annotated[int, Field(ge=0, le=1000)]
    floor: Annotated[int, Field(ge=-10, le=300)] | None = None


class UnitPatch(Body):
    number: Code | None = None
    area_m2: Annotated[float, Field(gt=0, le=100_000)] | None = None
    rooms: Annotated[int, Field(ge=0, le=1000)] | None = None
    floor: Annotated[int, Field(ge=-10, le=300)] | None = None


class PersonIn(Body):
    id_number: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    name: Name
    phone: Phone | None = None
    origin: Short | None = None


class CredentialIn(Body):
    format: CredentialFormat
    value: CredentialValue


class RegistrationIn(Body):
    unit_id: int
    person: PersonIn | None = None
    person_id: int | None = None
    arrived_at: When
    source: Literal["landlord", "coordinator", "import"] | None = None
    end_previous: bool = False
    credential: CredentialIn | None = None
    doors: list[wire.DeviceId] | None = None


class DeclarationIn(Body):
    # The door plate's token (the part of its QR code after /p/): only
    # someone standing at the door can declare there.
    plate: str = Field(min_length=1, max_length=64)
    person: PersonIn
    arrived_at: When


class EndIn(Body):
    departed_at: When | None = None
    reason: Reason = "deregistered"


class ConfirmIn(Body):
    end_previous: bool = False


class RejectIn(Body):
    reason: Reason


class LookupIn(Body):
    id_number: Annotated[str, StringConstraints(min_length=1, max_length=40)]


class UnitCredentialIn(Body):
    format: CredentialFormat
    value: CredentialValue
    person_id: int | None = None
    doors: list[wire.DeviceId] | None = None


def when(field: str, raw: str, zone: ZoneInfo) -> datetime:
    """A date is midnight of that day in the city's zone; a datetime must carry a zone."""
    if _DATE.fullmatch(raw):
        try:
            return datetime.combine(date.fromisoformat(raw), time(), zone)
        except ValueError:
            raise InvalidInput(field, "not a real date") from None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(field, "expected YYYY-MM-DD or an ISO 8601 date and time with a zone") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(field, "a date and time needs a zone, e.g. +08:00")
    return value


def not_future(field: str, value: datetime, now: datetime) -> datetime:
    if value > now + FUTURE_SLACK:
        raise InvalidInput(field, "is more than a day in the future")
    return value


def id_number(field: str, raw: str) -> str:
    """The normalised number, or InvalidInput saying what is wrong without repeating it."""
    try:
        return parse_id_number(raw).value
    except InvalidIdNumber as exc:
        raise InvalidInput(field, exc.reason) from None


def credential_value(field: str, fmt: str, raw: str) -> str:
    if fmt != "em4100":
        return raw
    value = raw.upper()
    if not EM4100.fullmatch(value):
        raise InvalidInput(field, "an em4100 card number is 10 hexadecimal digits")
    return value
