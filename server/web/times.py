"""Times as the database holds them. Every stored time is converted to UTC
first (server/db/types.UtcDateTime), and a time near the ends of Python's
calendar cannot be: "0001-01-01T00:00:00+08:00" is in year 0 in UTC, and
the conversion raises OverflowError inside the database layer, which would
be a 5xx. No date a person types here (an arrival, a departure, a pledge,
a filter) is outside 1900-2999, so a field refuses any other year before
it is parsed; the parsers then say what else is wrong."""

from __future__ import annotations

from datetime import datetime

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

MIN_YEAR = 1900
MAX_YEAR = 2999
YEARS = f"a year from {MIN_YEAR} to {MAX_YEAR}"


def year_problem(text: str) -> str | None:
    """Why the ISO 8601 date or time ``text`` names a year no stored time
    can have, or None. Every ISO form starts with its four-digit year;
    text that does not is left to the parser's own error."""
    year = text.strip()[:4]
    if len(year) == 4 and year.isascii() and year.isdigit() and not MIN_YEAR <= int(year) <= MAX_YEAR:
        return f"must be {YEARS}"
    return None


def in_range(value: datetime) -> bool:
    return MIN_YEAR <= value.year <= MAX_YEAR


def _check(text: str) -> str:
    problem = year_problem(text)
    if problem is not None:
        raise PydanticCustomError("year_out_of_range", problem)
    return text


# For a pydantic string field that holds a date or a time: Annotated[str, ..., STORABLE_YEAR].
STORABLE_YEAR = AfterValidator(_check)
# What the OpenAPI document says such a field holds, so that generated
# requests (tests/server/test_openapi_fuzz.py) are real dates and times.
DATE_OR_TIME = Field(json_schema_extra={"anyOf": [{"format": "date"}, {"format": "date-time"}]})
