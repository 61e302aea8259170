"""The canonical record: the exact text each entry is hashed as
(docs/audit.md, "Records"). Pure functions, no I/O."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from server.audit.entries import AuditEntry
from server.audit.errors import InvalidAuditEntry

# The columns the record's fields are copied into (server/db/models.py).
MAX_ACTOR = 64
MAX_ACTION = 48
MAX_SUBJECT = 80
# A signed 64-bit column and a JSON number every language reads exactly.
MAX_SIZE = 2**53 - 1


def rfc3339(at: datetime) -> str:
    """``2026-12-05T08:30:00.000000Z``: UTC, always six fraction digits, so
    one instant has one spelling."""
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}; audit times must carry a zone")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_text(entry: AuditEntry, seq: int, at: str) -> str:
    """The canonical JSON of ``entry`` as record ``seq`` written at ``at``
    (already in rfc3339 form)."""
    doc = {"seq": seq, "at": at, "actor": entry.actor, "action": entry.action, "subject": entry.subject,
           "status": entry.status, "purpose": None if entry.purpose is None else dict(entry.purpose),
           "size": entry.size, "detail": dict(entry.detail)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def check_entry(entry: AuditEntry) -> None:
    """Raises InvalidAuditEntry for an entry that could not be stored or read
    back by another program. Run before an entry joins a group commit, so a
    bad entry fails its own caller and never the others in the batch."""
    _text("actor", entry.actor, MAX_ACTOR, required=True)
    _text("action", entry.action, MAX_ACTION, required=True)
    if entry.subject is not None:
        _text("subject", entry.subject, MAX_SUBJECT, required=False)
    _number("status", entry.status, 999)
    _number("size", entry.size, MAX_SIZE)
    if entry.purpose is not None and not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in entry.purpose.items()):
        raise InvalidAuditEntry("purpose: keys and values must be strings")
    _plain_json("detail", entry.detail)
    try:
        # Lone surrogates pass json.dumps(ensure_ascii=False) but not UTF-8.
        record_text(entry, 0, "1970-01-01T00:00:00.000000Z").encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InvalidAuditEntry(f"not storable as a record: {exc}") from exc


def _text(name: str, value: object, limit: int, *, required: bool) -> None:
    if not isinstance(value, str) or (required and not value):
        raise InvalidAuditEntry(f"{name}: a non-empty string is required")
    if len(value) > limit:
        raise InvalidAuditEntry(f"{name}: at most {limit} characters, got {len(value)}")


def _number(name: str, value: object, limit: int) -> None:
    if type(value) is not int or not 0 <= value <= limit:
        raise InvalidAuditEntry(f"{name}: an integer from 0 to {limit} is required, got {value!r}")


def _plain_json(path: str, value: Any) -> None:
    """Only what JSON has: objects with string keys, arrays, strings,
    integers, finite floats, booleans and null. A tuple, a set or a datetime
    would be turned into something else or refused by json.dumps."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidAuditEntry(f"{path}: {value} is not a JSON number")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidAuditEntry(f"{path}: key {key!r} is not a string")
            _plain_json(f"{path}.{key}", item)
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _plain_json(f"{path}[{index}]", item)
        return
    raise InvalidAuditEntry(f"{path}: a {type(value).__name__} is not plain JSON")
