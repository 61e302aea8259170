"""Whether a terminal holds its gateway's allowlist, from the sync state the
gateway reports for it (wire.TerminalSyncHealth, docs/terminal-sync.md).

A terminal that decides at the door itself opens for whoever is on its own
list: until it holds the gateway's current list, someone deregistered may
still get in there. So it counts as behind when it could not be reached,
refused a write, has writes pending, or holds an older version (or none)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# A terminal's clock further off than this reads the validity times it holds
# wrong and stamps its events wrong: worth a line on the fleet page.
CLOCK_LIMIT_S = 120.0


def clock_off(terminal: Mapping[str, Any]) -> float | None:
    """How far its clock is off (its minus the gateway's), when past the limit."""
    offset = terminal.get("clock_offset_s")
    if isinstance(offset, int | float) and not isinstance(offset, bool) and abs(offset) > CLOCK_LIMIT_S:
        return float(offset)
    return None


def is_behind(terminal: Mapping[str, Any], allowlist_version: int | None) -> bool:
    held = terminal.get("version_held")
    if terminal.get("reachable") is False or (terminal.get("writes_refused") or 0) > 0:
        return True
    if (terminal.get("pending") or 0) > 0 or not isinstance(held, int):
        return True
    return allowlist_version is not None and held < allowlist_version


def count_behind(terminals: Sequence[Mapping[str, Any]], allowlist_version: int | None) -> int:
    return sum(1 for t in terminals if is_behind(t, allowlist_version))
