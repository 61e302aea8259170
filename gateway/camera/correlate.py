"""Who walked in on which grant: inward crossings of a door matched with the
door's grants by a minimum-cost assignment in time. Pure: no I/O, no clock
(the caller passes ``now``), so every rule is testable with numbers.

A grant at ``g`` may admit a crossing at ``c`` when
``g - grant_after_s <= c <= g + grant_before_s``: the card is read before the
person walks through (up to ``grant_before_s``), or the camera sees the
person a little before the verdict lands (up to ``grant_after_s``). Each grant
admits one person. The cost of a pair is the time between them; the
assignment first matches as many crossings as it can, then the cheapest way.
Matching by arrival instead pairs wrongly: grants at 0 s and 5 s, crossings
at 4.5 s and 6 s; the nearest grant for 4.5 s is the one at 5 s, which leaves
6 s with the grant of 0 s, while the cheapest assignment pairs 0-4.5, 5-6.

A crossing is decided once its window has closed (``c + grant_after_s +
settle_s``), so a grant that lands just after still counts; decisions are
final, and a grant matched to a decided crossing is spent.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

Outcome = Literal["matched", "tailgating", "unidentified"]

# Bounds: a door with more people waiting than this in one window is beyond
# what a camera at a door can count; the oldest are decided early.
MAX_PENDING_PER_DOOR = 256
MAX_GRANTS_PER_DOOR = 1024
# How long grants and decided crossings are kept after they can no longer
# be matched, for crossings the camera reports late (a busy analysis).
KEEP_SLACK_S = 60.0


@dataclass(frozen=True)
class InwardCrossing:
    """``t`` in epoch seconds (the gateway's clock, as card reads are)."""

    door: str
    device: str
    t: float
    at: datetime
    track: int
    snapshot: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Decision:
    crossing: InwardCrossing
    outcome: Outcome
    grant_seq: int | None = None  # matched
    entered: int = 0  # tailgating: inward crossings in the window
    granted: int = 0  # tailgating: grants in the window


@dataclass
class _Grant:
    t: float
    seq: int
    spent: bool = False


@dataclass
class _Decided:
    t: float
    grant_seq: int | None


@dataclass
class _Door:
    pending: list[InwardCrossing] = field(default_factory=list)
    grants: deque[_Grant] = field(default_factory=deque)
    decided: deque[_Decided] = field(default_factory=deque)


class Correlator:
    def __init__(self, *, grant_before_s: float = 10.0, grant_after_s: float = 2.0, settle_s: float = 0.5,
                 follow_s: float = 5.0) -> None:
        if not (grant_before_s >= 0 and grant_after_s >= 0 and settle_s >= 0 and follow_s >= 0):
            raise ValueError("the correlation window's bounds must not be negative")
        self.follow_s = min(follow_s, grant_before_s)
        self.grant_before_s = grant_before_s
        self.grant_after_s = grant_after_s
        self.settle_s = settle_s
        self._doors: dict[str, _Door] = {}

    # ------------------------------------------------------------------ input

    def add_grant(self, door: str, t: float, seq: int) -> None:
        """A card read or terminal verdict granted at ``door`` at ``t``; ``seq``
        is its event's number in the outbox."""
        state = self._doors.setdefault(door, _Door())
        grant = _Grant(t, seq)
        # Nearly always in order; a late one is inserted where it belongs.
        if state.grants and state.grants[-1].t > t:
            items = sorted([*state.grants, grant], key=lambda g: g.t)
            state.grants = deque(items)
        else:
            state.grants.append(grant)
        while len(state.grants) > MAX_GRANTS_PER_DOOR:
            state.grants.popleft()

    def add_crossing(self, crossing: InwardCrossing, now: float) -> list[Decision]:
        """Hold an inward crossing until its window closes; returns the
        decisions forced early when a door has too many waiting."""
        state = self._doors.setdefault(crossing.door, _Door())
        state.pending.append(crossing)
        if len(state.pending) <= MAX_PENDING_PER_DOOR:
            return []
        oldest = min(c.t for c in state.pending)
        return self._decide_door(state, now, force_until=oldest)

    # ------------------------------------------------------------------ output

    def decide(self, now: float) -> list[Decision]:
        """Every crossing whose window has closed by ``now``, in time order."""
        decisions: list[Decision] = []
        for door in list(self._doors):
            state = self._doors[door]
            decisions.extend(self._decide_door(state, now))
            self._prune(state, now)
            if not state.pending and not state.grants and not state.decided:
                del self._doors[door]
        decisions.sort(key=lambda d: d.crossing.t)
        return decisions

    def flush(self) -> list[Decision]:
        """Decide everything now (shutdown): with the grants known so far."""
        return self.decide(math.inf)

    def next_due(self) -> float | None:
        """When the next pending crossing's window closes (epoch seconds)."""
        times = [c.t for s in self._doors.values() for c in s.pending]
        return min(times) + self.grant_after_s + self.settle_s if times else None

    def pending(self) -> int:
        return sum(len(s.pending) for s in self._doors.values())

    # ------------------------------------------------------------------ matching

    def _admits(self, grant_t: float, crossing_t: float) -> bool:
        return grant_t - self.grant_after_s <= crossing_t <= grant_t + self.grant_before_s

    def _decide_door(self, state: _Door, now: float, force_until: float | None = None) -> list[Decision]:
        closing = now - self.grant_after_s - self.settle_s
        due = [c for c in state.pending if c.t <= closing or (force_until is not None and c.t <= force_until)]
        if not due:
            return []
        free = [g for g in state.grants if not g.spent]
        match = self._assign(state.pending, free)
        due_ids = {id(c) for c in due}
        outcomes: list[tuple[InwardCrossing, _Grant | None]] = []
        for i, crossing in enumerate(state.pending):
            if id(crossing) in due_ids:
                grant = match.get(i)
                if grant is not None:
                    grant.spent = True
                state.decided.append(_Decided(crossing.t, grant.seq if grant is not None else None))
                outcomes.append((crossing, grant))
        # Out of pending before the tailgating counts, so nobody counts twice.
        state.pending = [c for c in state.pending if id(c) not in due_ids]
        return [Decision(c, "matched", grant_seq=g.seq) if g is not None else self._unmatched(state, c)
                for c, g in outcomes]

    def _assign(self, crossings: list[InwardCrossing], grants: list[_Grant]) -> dict[int, _Grant]:
        """Index of crossing -> grant: as many pairs as can be, then the least
        total time between grant and crossing."""
        if not crossings or not grants:
            return {}
        c_t = np.array([c.t for c in crossings])[:, None]
        g_t = np.array([g.t for g in grants])[None, :]
        cost = np.abs(c_t - g_t)
        feasible = (c_t >= g_t - self.grant_after_s) & (c_t <= g_t + self.grant_before_s)
        if not feasible.any():
            return {}
        # An infeasible pair costs more than any whole feasible assignment, so
        # the solver prefers one more match to any saving in time.
        big = (min(len(crossings), len(grants)) + 1) * (self.grant_before_s + self.grant_after_s + 1.0)
        cost = np.where(feasible, cost, big)
        rows, cols = linear_sum_assignment(cost)
        return {int(r): grants[int(c)] for r, c in zip(rows, cols, strict=True) if feasible[r, c]}

    def _unmatched(self, state: _Door, crossing: InwardCrossing) -> Decision:
        """Tailgating when the door was opened for someone else just before
        (a grant within ``follow_s`` before the crossing, or up to
        ``grant_after_s`` after it): following them through. A person who
        walks in later than that, with every grant of the matching window
        spent on others, came in on nobody's grant: an unidentified entry."""
        low, high = crossing.t - self.follow_s, crossing.t + self.grant_after_s
        in_window = [g for g in state.grants if low <= g.t <= high]
        if not in_window:
            return Decision(crossing, "unidentified")
        # Everyone who competed for these grants: the inward crossings of the
        # window and those that took one of its grants from outside it. Every
        # grant of the window went to someone else (else this crossing would
        # have had it), so this counts at least two people.
        seqs = {g.seq for g in in_window}
        others = sum(1 for d in state.decided if low <= d.t <= high or d.grant_seq in seqs) - 1  # less itself
        waiting = sum(1 for c in state.pending if low <= c.t <= high)
        entered = max(2, 1 + others + waiting)
        return Decision(crossing, "tailgating", entered=entered, granted=len(in_window))

    def _prune(self, state: _Door, now: float) -> None:
        horizon = now - self.grant_before_s - self.grant_after_s - self.settle_s - KEEP_SLACK_S
        while state.grants and state.grants[0].t < horizon:
            state.grants.popleft()
        while state.decided and state.decided[0].t < horizon:
            state.decided.popleft()
