r"""Resident identity numbers (GB 11643-1999): pure validation, no I/O.

Eighteen characters: a 6-digit area code, the birth date as YYYYMMDD, a
3-digit sequence whose parity is the sex (odd: male), and a check character
by ISO 7064 MOD 11-2. Area codes that are no longer current stay valid, so
only the province (first two digits) is checked against the list of codes
that have existed.

Every check, digest and mask works on one form, ``normalise``'s: NFKC first,
so what a phone keyboard types (full-width ４４０１…, Ｘ, ideographic spaces)
is the same number as its ASCII twin, then nothing but ASCII ``0-9`` and
``X``. Python's ``\d`` and ``int()`` also take other scripts' digits
(Arabic-Indic ٤٤٠١…, Devanagari, ...); NFKC leaves those alone and they are
refused, never mapped: otherwise one person could be registered twice under
two spellings of one number, each with its own digest."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from server.errors import ServerError

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
# Provinces, autonomous regions and municipalities, including 71/81/82
# (Taiwan, Hong Kong, Macao residence permits use 83 since 2018: also valid).
PROVINCES = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65",
    "71", "81", "82", "83",
})
EARLIEST_BIRTH = date(1880, 1, 1)
# Explicit ASCII classes, never \d: see the module's docstring.
_SHAPE = re.compile(r"[0-9]{17}[0-9X]")
_ALLOWED = frozenset("0123456789X")


class InvalidIdNumber(ServerError, ValueError):
    """The number is not a valid identity number; ``reason`` says why (in
    English, without repeating the number)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IdNumber:
    value: str
    area_code: str
    birth_date: date
    sex: str  # "M" or "F"

    @property
    def masked(self) -> str:
        return mask_id_number(self.value)


def check_character(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def normalise(raw: str) -> str:
    """The form every rule, digest and mask uses: NFKC (full-width digits and
    x become ASCII, ideographic and no-break spaces become plain ones), spaces
    removed, a lower-case x upper-cased. Only ``x`` is upper-cased, not the
    whole text: ``str.upper`` turns some non-ASCII letters into ASCII ones
    (``ſ`` into ``S``), and what is not ASCII must stay so to be refused."""
    return unicodedata.normalize("NFKC", raw).strip().replace(" ", "").replace("x", "X")


def parse_id_number(raw: str, *, today: date | None = None) -> IdNumber:
    """The number in its normalised form, or InvalidIdNumber. Every rule
    below runs on that form (the sequence rule on full-width ０００ too)."""
    value = normalise(raw)
    # A character that can never be part of a number (another script's
    # digit, a letter, an invisible zero-width one) is named as such before
    # the length: "got 19" for 18 visible characters would only puzzle.
    if not set(value) <= _ALLOWED:
        raise InvalidIdNumber("must be 17 digits and a digit or X")
    if len(value) != 18:
        raise InvalidIdNumber(f"must be 18 characters, got {len(value)}")
    if not _SHAPE.fullmatch(value):
        raise InvalidIdNumber("must be 17 digits and a digit or X")
    if value[:2] not in PROVINCES:
        raise InvalidIdNumber(f"unknown province code {value[:2]}")
    try:
        birth = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise InvalidIdNumber("birth date is not a real date") from None
    if birth < EARLIEST_BIRTH or birth > (today or date.today()):
        raise InvalidIdNumber("birth date is impossible")
    if value[14:17] == "000":
        raise InvalidIdNumber("sequence number 000 is not issued")
    expected = check_character(value[:17])
    if value[17] != expected:
        raise InvalidIdNumber("wrong check character")
    return IdNumber(value, value[:6], birth, "M" if int(value[16]) % 2 else "F")


def mask_id_number(value: str) -> str:
    """The only form shown anywhere (server/pages/masks.py lists the masks of
    every kind): province and city, then the last four (``4401**********123X``).
    Shorter input, never a valid number, is masked all but its last two."""
    if len(value) == 18:
        return value[:4] + "*" * 10 + value[-4:]
    return "*" * max(0, len(value) - 2) + value[-2:]


def make_id_number(area_code: str, birth: date, sequence: int) -> str:
    """A valid number for simulations and tests (``sequence`` 1..999)."""
    if not 1 <= sequence <= 999:
        raise ValueError("sequence must be 1..999")
    first17 = f"{area_code}{birth:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)
