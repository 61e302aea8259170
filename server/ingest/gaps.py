"""Sequence-number range arithmetic for gap tracking (pure functions).

Ranges are inclusive ``(first, last)`` tuples; "merged" lists are sorted and
neither overlap nor touch, as ``rentgate.wire.to_ranges`` returns them.
"""

from __future__ import annotations

from collections.abc import Sequence

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
