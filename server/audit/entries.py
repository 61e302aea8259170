"""What a part of the server hands the audit log: one entry per audited act.
The log adds the time and the chain (server/audit/log.py); the canonical
form that is hashed is specified in docs/audit.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AuditEntry:
    # Who: "client:<client id>", "officer:<username>", "user:<id>",
    # "system:<job>", "cli:<command>".
    actor: str
    # What: "police.person_check", "police.batch", "pii.view", "retention.purge", ...
    action: str
    # Whom or what about: "id:<keyed digest of an identity number>",
    # "building:<id>", "unit:<id>", "watch:<public id>"; None when nothing.
    subject: str | None = None
    # The HTTP status answered (or 0 for acts that are not requests).
    status: int = 0
    # The purpose the request gave: code, legal_basis, case_ref, badge.
    purpose: Mapping[str, str] | None = None
    # How much the answer held: persons, lines, events, rows deleted.
    size: int = 0
    # Anything else worth keeping; never a full identity number, name or phone.
    detail: Mapping[str, Any] = field(default_factory=dict)
