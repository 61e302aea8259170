"""Unit door cameras in the simulated district (pure: seeded, no I/O).

``--hidden SHARE`` gives that share of units a *hidden occupant*: someone
who moves in without a card and is never registered, and walks in behind no
swipe of their own (the card system cannot see them). ``--cameras SHARE``
puts a camera at the door of that share of units. Both draw from their own
random streams, so the rest of the district (and its card reads) is the same
with and without them: a run with cameras and one without on the same seed
differ only in what the cameras add.

A camera sees each resident go out and come back in: every card read of a
unit's resident is an entry (a ``people_crossing`` in) preceded by an exit
some time after their previous entry; a hidden occupant comes and goes once
or twice on most days, each entry an ``unidentified_entry``, or a
``tailgating`` when a housemate swiped within the two minutes before. The
camera misses a crossing with probability ``miss`` and counts one twice with
probability ``double``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from firmware_sim.district.activity import Swipe
from firmware_sim.district.world import DAY, PersonSpec, Stay, World, _person

TAILGATE_WINDOW = timedelta(minutes=2)


@dataclass(frozen=True)
class CameraOptions:
    share: float = 0.0  # of units with a door camera
    hidden: float = 0.0  # of units with a hidden occupant
    miss: float = 0.05
    double: float = 0.02


@dataclass(frozen=True)
class Crossing:
    at: datetime
    unit: str
    kind: str  # people_crossing, unidentified_entry, tailgating
    direction: Literal["in", "out"]


def door_of(unit: str) -> str:
    """The unit door's name in the gateway's events (and in ``doors``)."""
    return f"unit-{unit}"


def camera_units(world: World, share: float) -> list[str]:
    rng = random.Random(f"{world.seed}:cameras")
    return [key for key in sorted(world.units()) if rng.random() < share]


def add_hidden(world: World, share: float) -> list[Stay]:
    """Hidden occupants, appended to the world's people."""
    rng = random.Random(f"{world.seed}:hidden")
    out = []
    for key in sorted(world.units()):
        if rng.random() >= share:
            continue
        arrive = world.start + timedelta(days=rng.uniform(0, world.days * 0.6), hours=rng.uniform(8, 20))
        stay_days = rng.uniform(20, 150)
        depart: datetime | None = arrive + timedelta(days=stay_days)
        if depart is not None and depart >= world.end:
            depart = None
        person: PersonSpec = _person(rng, 500_000 + len(world.people))
        person.index = len(world.people)
        stay = Stay(person.index, key, arrive, depart, False, None, None)
        person.stays.append(stay)
        world.people.append(person)
        out.append(stay)
    return out


def _present(stay: Stay, lo: datetime, hi: datetime) -> bool:
    return stay.arrive < hi and (stay.depart is None or stay.depart > lo)


def day_crossings(world: World, day: int, units: set[str], swipes: list[Swipe],
                  options: CameraOptions) -> list[Crossing]:
    rng = random.Random(f"{world.seed}:crossings:{day}")
    lo = world.start + day * DAY
    hi = lo + DAY
    home: dict[int, str] = {}
    hidden: list[Stay] = []
    for person in world.people:
        for stay in person.stays:
            if stay.unit in units and _present(stay, lo, hi):
                home[person.index] = stay.unit
                if not stay.cards:  # still hidden (one found and registered swipes a card)
                    hidden.append(stay)
    entries: list[tuple[datetime, str, int, bool]] = []  # at, unit, person, granted
    for s in swipes:
        unit = home.get(s.person) if s.person is not None else None
        if unit is not None:
            entries.append((s.at, unit, s.person or 0, True))
    for stay in hidden:
        if rng.random() < 0.15:
            continue
        start = max(lo + timedelta(hours=7), stay.arrive)
        end = min(lo + timedelta(hours=23), stay.depart or hi)
        if start >= end:
            continue
        for _ in range(rng.choice((1, 1, 2))):
            at = start + timedelta(seconds=rng.uniform(0, (end - start).total_seconds()))
            entries.append((at, stay.unit, stay.person, False))
    entries.sort()
    out: list[Crossing] = []
    last_in: dict[int, datetime] = {}
    swiped: dict[str, list[datetime]] = {}
    for at, unit, who, granted in entries:
        # Out some time after their previous entry (or since the morning).
        since = max(last_in.get(who, lo + timedelta(hours=6)), lo + timedelta(hours=6))
        if at > since:
            out_at = since + timedelta(seconds=rng.uniform(0, (at - since).total_seconds()))
            out.append(Crossing(out_at, unit, "people_crossing", "out"))
        last_in[who] = at
        if granted:
            swiped.setdefault(unit, []).append(at)
            out.append(Crossing(at + timedelta(seconds=5), unit, "people_crossing", "in"))
        else:
            behind = any(timedelta(0) <= at - t <= TAILGATE_WINDOW for t in swiped.get(unit, []))
            out.append(Crossing(at, unit, "tailgating" if behind else "unidentified_entry", "in"))
    seen: list[Crossing] = []
    for c in sorted(out, key=lambda c: c.at):
        if rng.random() < options.miss:
            continue
        seen.append(c)
        if rng.random() < options.double:
            seen.append(Crossing(c.at + timedelta(seconds=1), c.unit, c.kind, c.direction))
    return seen
