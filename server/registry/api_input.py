"""Request bodies of the registry API and the parsing they need: dates a
person types ("2026-03-01", local midnight in the city's zone) or aware
datetimes, identity numbers and card numbers, each failure an InvalidInput
naming the field as the client sent it (``person.id_number``).

Every text field has a bound and holds one line of visible text
(server/registry/freetext.py: no control, direction-changing or invisible
characters). What identifies something (codes, unit numbers, phones, dates,
card values) is NFKC-normalised first, so a phone keyboard's full-width
``３０１`` is unit 301 and not a look-alike second one; names stay as written.
A refused value is a 400 naming the field; its text is never echoed."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from rentgate import wire
from server.registry import freetext
from server.registry.idnumber import InvalidIdNumber, parse_id_number
from server.registry.service import EM4100, PHONE
from server.web.errors import InvalidInput
from server.web.ids import DbId
from server.web.times import DATE_OR_TIME, STORABLE_YEAR


def _visible(value: str) -> str:
    """One line of visible text (the pydantic error's message becomes the
    400's detail, so it says what is wrong without the text itself)."""
    problem = freetext.hidden_character(value)
    if problem is not None:
        raise PydanticCustomError("hidden_character", problem)
    return value


def _named(value: str) -> str:
    """Visible, and naming something: at least one letter or digit."""
    _visible(value)
    if not freetext.has_substance(value):
        raise PydanticCustomError("no_letters", "needs at least one letter or digit")
    return value


def _identifier(value: str) -> str:
    """NFKC (full-width becomes ASCII), then visible."""
    value = freetext.compatible(value)
    if not value:
        raise PydanticCustomError("empty", "is empty")
    return _visible(value)


def _phone(value: str) -> str:
    """ASCII digits after NFKC, in the registry's shape (service.PHONE, whose
    classes are ASCII [0-9], not the any-script digit class)."""
    value = freetext.compatible(value)
    if not PHONE.fullmatch(value):
        raise PydanticCustomError("phone", "not a phone number: 5 to 20 digits 0-9, optionally a leading + "
                                           "and - or spaces between them")
    return value


def _strip(min_length: int, max_length: int) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


# Bounds as the registry stores them (server/registry/service.py, db/models.py).
Name = Annotated[str, _strip(1, 200), AfterValidator(_named)]
AreaName = Annotated[str, _strip(1, 100), AfterValidator(_named)]
PersonName = Annotated[str, _strip(1, 100), AfterValidator(_named)]
Address = Annotated[str, _strip(1, 300), AfterValidator(_named)]
Code = Annotated[str, _strip(1, 32), AfterValidator(_identifier)]
Phone = Annotated[str, _strip(1, 20), AfterValidator(_phone)]
Short = Annotated[str, _strip(1, 100), AfterValidator(_named)]
Username = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_visible)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32,
                                          pattern=r"^[a-z][a-z0-9_]*$")]
# A date ("2026-03-01") or an ISO datetime with a zone; parsed by when().
# STORABLE_YEAR: a year-1 date would overflow converting to UTC in the database layer (a 5xx).
When = Annotated[str, _strip(10, 40), AfterValidator(_identifier), STORABLE_YEAR, DATE_OR_TIME]
CredentialFormat = Literal["em4100", "wiegand26", "wiegand34", "osdp_raw", "terminal_person", "raw"]
CredentialValue = Annotated[str, _strip(1, 128), AfterValidator(_identifier)]
# Identity numbers: parse_id_number normalises and refuses what is not a
# number, with a reason that never repeats it.
IdNumberText = Annotated[str, StringConstraints(min_length=1, max_length=40)]
Door = Annotated[wire.DeviceId, AfterValidator(_visible)]
# More doors than any building has: a bound on the allowlist entry's size.
MAX_DOORS = 100
Doors = Annotated[list[Door], Field(max_length=MAX_DOORS)]

# ASCII digits: \d would take other scripts' digits, which date.fromisoformat
# then refuses as "not a real date".
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Arrivals a day ahead are accepted (a landlord registering tonight's tenant
# in another zone's idea of today); anything later is a typing mistake.
FUTURE_SLACK = timedelta(days=1)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AreaIn(Body):
    level: Literal["district", "street", "community", "grid"]
    code: Code
    name: AreaName
    parent_code: Code | None = None


class BuildingIn(Body):
    name: Name
    code: Code | None = None
    address: Address | None = None
    grid_code: Code | None = None
    landlord_name: Short | None = None
    landlord_phone: Phone | None = None
    landlord_username: Username | None = None
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
    id_number: IdNumberText
    name: PersonName
    phone: Phone | None = None
    origin: Short | None = None


class CredentialIn(Body):
    format: CredentialFormat
    value: CredentialValue


class RegistrationIn(Body):
    unit_id: DbId
    person: PersonIn | None = None
    person_id: DbId | None = None
    arrived_at: When
    source: Literal["landlord", "coordinator", "import"] | None = None
    end_previous: bool = False
    credential: CredentialIn | None = None
    doors: Doors | None = None


class DeclarationIn(Body):
    # The door plate's token (the part of its QR code after /p/): only
    # someone standing at the door can declare there.
    plate: Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_visible)]
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
    id_number: IdNumberText


class RegistrationCredentialIn(Body):
    format: CredentialFormat
    value: CredentialValue
    doors: Doors | None = None


class UnitCredentialIn(Body):
    format: CredentialFormat
    value: CredentialValue
    person_id: DbId | None = None
    doors: Doors | None = None


def when(field: str, raw: str, zone: ZoneInfo) -> datetime:
    """A date is midnight of that day in the city's zone; a datetime must carry a zone."""
    raw = freetext.compatible(raw)  # a When is already; other callers' text may not be
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
    """``raw`` is NFKC already (CredentialValue). An em4100 number is ASCII
    hexadecimal: upper-cased only once it is ASCII, since str.upper() turns
    some other letters into ASCII ones."""
    if fmt != "em4100":
        return raw
    value = raw.upper() if raw.isascii() else raw
    if not EM4100.fullmatch(value):
        raise InvalidInput(field, "an em4100 card number is 10 hexadecimal digits")
    return value
