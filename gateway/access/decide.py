"""The access decision, as a pure function of what the gateway knows.

Order of the checks, first failure wins: unknown, revoked, not yet valid,
expired, wrong door, anti-passback. "revoked" needs memory the entry alone does
not have: the allowlist store keeps a tombstone for every credential a delta
removed or a newer snapshot dropped (or listed as revoked), and the caller
passes ``revoked=True`` when the credential has one and no live entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from rentgate.wire import AllowlistEntry

Reason = Literal["granted", "unknown", "revoked", "expired", "not_yet_valid", "wrong_door", "anti_passback"]
Direction = Literal["entry", "exit"]


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: Reason
    # The server's opaque person reference, when the credential is known.
    person: str | None = None

    @property
    def outcome(self) -> Literal["granted", "denied"]:
        """For ``wire.CardRead.decision``; ``reason`` goes in ``CardRead.reason``."""
        return "granted" if self.granted else "denied"


@dataclass(frozen=True, slots=True)
class PassbackCheck:
    """This door's side of an anti-passback pair, and which side the person
    last passed (None: unknown, e.g. first use or forgotten)."""

    direction: Direction
    last: Direction | None


def decide(
    entry: AllowlistEntry | None,
    *,
    door: str | None,
    now: datetime,
    passback_state: PassbackCheck | None = None,
    revoked: bool = False,
) -> Decision:
    if entry is None:
        return Decision(False, "revoked" if revoked else "unknown")
    person = entry.person
    if entry.valid_from is not None and now < entry.valid_from:
        return Decision(False, "not_yet_valid", person)
    if entry.valid_until is not None and now >= entry.valid_until:
        return Decision(False, "expired", person)
    # A reader with no door configured opens nothing in particular; only an
    # entry valid for every door may pass there.
    if entry.doors and door not in entry.doors:
        return Decision(False, "wrong_door", person)
    if passback_state is not None and passback_state.last == passback_state.direction:
        return Decision(False, "anti_passback", person)
    return Decision(True, "granted", person)
