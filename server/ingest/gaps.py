"""Sequence-number range arithmetic for gap tracking (pure functions).

Ranges are inclusive ``(first, last)`` tuples; "merged" lists are sorted and
neither overlap nor touch, as ``rentgate.wire.to_ranges`` returns them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rentgate.wire import SeqRange, merge_ranges

merge = merge_ranges  # ranges are wire sequence ranges; one definition for both sides


def subtract(span: SeqRange, covered: Sequence[SeqRange]) -> list[SeqRange]:
    """The parts of ``span`` that no range in merged ``covered`` contains."""
    first, last = span
    out: list[SeqRange] = []
    for a, b in covered:
        if b < first:
            continue
        if a > last:
            break
        if a > first:
            out.append((first, a - 1))
        first = b + 1
        if first > last:
            return out
    out.append((first, last))
    return out


def intersect(span: SeqRange, ranges: Sequence[SeqRange]) -> list[SeqRange]:
    """The parts of ``span`` inside merged ``ranges``."""
    first, last = span
    return [(max(a, first), min(b, last)) for a, b in ranges if a <= last and b >= first]


def new_gaps(max_seen: int, seen: Sequence[SeqRange]) -> list[SeqRange]:
    """Holes above ``max_seen`` that a batch of merged ``seen`` ranges leaves
    below its own highest number."""
    if not seen or seen[-1][1] <= max_seen + 1:
        return []
    return subtract((max_seen + 1, seen[-1][1]), seen)


@dataclass(frozen=True)
class Jump:
    """A number more than the bound past the highest one before it."""

    seq: int
    after: int  # the gateway's highest number before it
    # True: more numbers came close after it, so the gateway's numbering has
    # moved there and continues from it. False: a lone number, stored but
    # left out of the count, so one stray value cannot end gap detection.
    followed: bool


@dataclass
class Advance:
    highest: int
    gaps: list[SeqRange] = field(default_factory=list)
    jumps: list[Jump] = field(default_factory=list)


def advance(max_seen: int, seen: Sequence[SeqRange], bound: int,
            highest_stored: Callable[[int, int], int | None]) -> Advance:
    """What merged ``seen`` ranges do to a gateway whose highest number is
    ``max_seen``: its new highest number, the holes to ask for, and the jumps.

    A hole of at most ``bound`` numbers is a gap. A wider one is a jump: never
    asked for (a single event numbered 2**63-1 would otherwise ask a gateway
    for 9.2e18 events). The numbering moves past a jump only when more numbers
    arrive within ``bound`` of it, in the same batch or later:
    ``highest_stored(low, high)`` is the highest number already stored in
    ``[low, high]`` (None if none), and finds a lone jump stored before.
    """
    highest = max_seen
    out = Advance(highest)
    i = 0
    while i < len(seen):
        first, last = seen[i]
        if last <= highest:
            i += 1
            continue
        first = max(first, highest + 1)
        if first - highest - 1 > bound:
            earlier = highest_stored(highest + bound + 1, first - 1)
            if earlier is not None and first - earlier - 1 <= bound:
                highest = earlier  # a lone jump stored before, now followed: count from it
                continue
            followed = last > first or (i + 1 < len(seen) and seen[i + 1][0] - last - 1 <= bound)
            out.jumps.append(Jump(first, highest, followed))
            if followed:
                highest = last
            i += 1
            continue
        if first > highest + 1:
            out.gaps.append((highest + 1, first - 1))
        highest = last
        i += 1
    out.highest = highest
    return out


def settle(gap: SeqRange, seen: Sequence[SeqRange], dropped: Sequence[SeqRange]) -> list[tuple[SeqRange, str]]:
    """What remains of an open gap after ``seen`` numbers arrived and the
    gateway declared ``dropped`` ones gone: ``(range, "open"|"lost")`` pieces,
    or an empty list when the gap is filled completely."""
    missing = subtract(gap, seen)
    pieces: list[tuple[SeqRange, str]] = []
    for part in missing:
        pieces.extend((r, "lost") for r in intersect(part, dropped))
        pieces.extend((r, "open") for r in subtract(part, dropped))
    return sorted(pieces)
