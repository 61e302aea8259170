"""Why the police ask: every police request names a purpose from this list,
a legal basis and a case reference (officers add their badge number), and
the purpose decides what the answer may contain. A part of an answer is
given only when the caller's scopes grant it AND the purpose permits it
(docs/police.md has the table).

Pure: no I/O, so the API, the console page, the docs table and the tests
read the same list."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from server.registry.freetext import hidden_character
from server.web.errors import InvalidInput

# The parts an answer can hold.
MATCH = "match"            # registered here yes/no, since, at which address
OCCUPANTS = "occupants"    # who is registered / evidenced at an address
HISTORY = "history"        # a person's past registrations
CASES = "cases"            # open reconciliation cases about the person
FULL_ID = "full_id"        # identity numbers and names in full
LAST_SEEN = "last_seen"    # the last door that read the person's card
EVENTS = "events"          # door events of one person in a time window
BATCH = "batch"            # many numbers in one request
WATCH = "watch"            # alerts when a door reads the person's card
PARTS = (MATCH, OCCUPANTS, HISTORY, CASES, FULL_ID, LAST_SEEN, EVENTS, BATCH, WATCH)

# What each scope of a police client or officer grants (POLICE_SCOPES).
SCOPE_PARTS: dict[str, frozenset[str]] = {
    "lookup": frozenset({MATCH, OCCUPANTS}),
    "detail": frozenset({HISTORY, CASES, FULL_ID}),
    "events": frozenset({LAST_SEEN, EVENTS}),
    "batch": frozenset({BATCH}),
    "watch": frozenset({WATCH}),
}


@dataclass(frozen=True)
class PurposeKind:
    code: str
    zh: str
    en: str
    permits: frozenset[str]


def _kind(code: str, zh: str, en: str, *parts: str) -> PurposeKind:
    return PurposeKind(code, zh, en, frozenset(parts))


PURPOSES: dict[str, PurposeKind] = {k.code: k for k in (
    _kind("residence_verification", "居住登记核查", "verifying a residence registration",
          MATCH, OCCUPANTS, BATCH),
    _kind("rental_inspection", "出租房屋治安检查", "public-order inspection of a rental building",
          MATCH, OCCUPANTS, BATCH),
    _kind("criminal_investigation", "刑事案件侦查", "investigating a criminal case",
          MATCH, OCCUPANTS, HISTORY, CASES, FULL_ID, LAST_SEEN, EVENTS, BATCH, WATCH),
    _kind("public_order_case", "治安案件查处", "handling a public-order case",
          MATCH, OCCUPANTS, HISTORY, CASES, FULL_ID, LAST_SEEN),
    _kind("fugitive_pursuit", "在逃人员追逃", "pursuing a fugitive",
          MATCH, LAST_SEEN, EVENTS, BATCH, WATCH),
    _kind("missing_person", "失踪人员查找", "finding a missing person",
          MATCH, LAST_SEEN, EVENTS, WATCH),
    _kind("emergency_rescue", "紧急救助", "an emergency: rescue or protection of life",
          MATCH, OCCUPANTS, LAST_SEEN),
)}

# A badge number (警号): digits and Latin letters, as forces issue them.
_BADGE = re.compile(r"[0-9A-Za-z]{4,16}")
LEGAL_BASIS_MAX = 200
CASE_REF_MAX = 64


@dataclass(frozen=True)
class Purpose:
    """A request's stated purpose, validated."""

    kind: PurposeKind
    legal_basis: str
    case_ref: str
    badge: str | None

    @property
    def code(self) -> str:
        return self.kind.code

    def as_record(self) -> dict[str, str]:
        """As the audit log keeps it."""
        record = {"code": self.code, "legal_basis": self.legal_basis, "case_ref": self.case_ref}
        if self.badge is not None:
            record["badge"] = self.badge
        return record


def _text(raw: Any, field: str, *, lo: int, hi: int) -> str:
    if not isinstance(raw, str):
        raise InvalidInput(field, "required: a text")
    value = raw.strip()
    if not lo <= len(value) <= hi:
        raise InvalidInput(field, f"must be {lo} to {hi} characters")
    if (problem := hidden_character(value)) is not None:
        raise InvalidInput(field, problem)
    return value


def parse_purpose(raw: Any, *, badge_required: bool, where: str = "purpose") -> Purpose:
    """The ``purpose`` object of a request (or its query parameters, as a
    dict), or InvalidInput naming the field. Unknown codes are refused with
    the list of known ones: a client must know what it is declaring."""
    if not isinstance(raw, dict):
        raise InvalidInput(where, "required: an object with code, legal_basis, case_ref (and badge for officers)")
    unknown = sorted(set(raw) - {"code", "legal_basis", "case_ref", "badge"})
    if unknown:
        raise InvalidInput(f"{where}.{unknown[0][:40]}", "unknown field")
    code = raw.get("code")
    if not isinstance(code, str) or code not in PURPOSES:
        raise InvalidInput(f"{where}.code", "required, one of: " + ", ".join(PURPOSES))
    legal_basis = _text(raw.get("legal_basis"), f"{where}.legal_basis", lo=2, hi=LEGAL_BASIS_MAX)
    case_ref = _text(raw.get("case_ref"), f"{where}.case_ref", lo=1, hi=CASE_REF_MAX)
    badge_raw = raw.get("badge")
    badge: str | None = None
    if badge_raw is not None or badge_required:
        if not isinstance(badge_raw, str) or not _BADGE.fullmatch(badge_raw.strip()):
            raise InvalidInput(f"{where}.badge", "required for officers: 4 to 16 letters or digits")
        badge = badge_raw.strip()
    return Purpose(PURPOSES[code], legal_basis, case_ref, badge)


def granted_parts(scopes: frozenset[str] | tuple[str, ...]) -> frozenset[str]:
    return frozenset().union(*(SCOPE_PARTS.get(s, frozenset()) for s in scopes))
