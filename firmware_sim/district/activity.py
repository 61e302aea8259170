"""Who swipes which card at which building on one simulated day (pure).

Ordinary residents swipe 1-4 times on most days (about 2 on average), skip
some days and go on trips; rare swipers come through the door only every 5
to 20 days; everyone swipes on arrival. Roommates sometimes use each other's
card; guests use their card on one day; a found lost card is tried at the door.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from firmware_sim.district.world import DAY, CardUse, PersonSpec, Stay, World

_SWIPES_PER_DAY = (1, 2, 3, 4)
_SWIPE_WEIGHTS = (35, 35, 20, 10)
_ABSENT = 0.08
_BORROW = 0.03


@dataclass(frozen=True)
class Swipe:
    at: datetime
    building: int
    card: str
    # The person who really swiped; None for guests and strangers.
    person: int | None
    # What the gateway's allowlist says (the card is one its holder carries).
    granted: bool


def card_at(stay: Stay, at: datetime) -> CardUse | None:
    for card in stay.cards:
        if card.start <= at and (card.end is None or at < card.end):
            return card
    return None


def _living(stay: Stay, lo: datetime, hi: datetime) -> bool:
    return stay.arrive < hi and (stay.depart is None or stay.depart > lo)


def day_swipes(world: World, day: int) -> list[Swipe]:
    rng = random.Random(f"{world.seed}:swipes:{day}")
    lo = world.start + day * DAY
    hi = lo + DAY
    out: list[Swipe] = []
    units = world.units()
    present: dict[str, list[tuple[PersonSpec, Stay]]] = {}
    for person in world.people:
        for stay in person.stays:
            if _living(stay, lo, hi):
                present.setdefault(stay.unit, []).append((person, stay))
    for unit_key, residents in present.items():
        building = units[unit_key].building
        for person, stay in residents:
            for at in _times(rng, person, stay, day, lo):
                card = card_at(stay, at)
                if card is None:
                    continue  # card lost, waiting for the new one: the landlord lets them in
                value = card.value
                if len(residents) > 1 and rng.random() < _BORROW:
                    mate_person, mate = rng.choice([r for r in residents if r[0] is not person])
                    mate_card = card_at(mate, at)
                    if mate_card is not None:
                        value = mate_card.value
                out.append(Swipe(at, building, value, person.index, True))
    for person in world.people:
        for stay in person.stays:
            for _, _, tries in stay.losses:
                lost = stay.cards[0].value
                out.extend(Swipe(at, units[stay.unit].building, lost, None, False) for at in tries if lo <= at < hi)
    for visit in world.visits:
        if lo <= visit.issued < hi:
            out.extend(Swipe(at, units[visit.unit].building, visit.card, None, True) for at in visit.swipes)
    out.sort(key=lambda s: s.at)
    return out


def _times(rng: random.Random, person: PersonSpec, stay: Stay, day: int, lo: datetime) -> list[datetime]:
    start = max(lo + timedelta(hours=6.5), stay.arrive)
    end = lo + timedelta(hours=23.5)
    if stay.depart is not None:
        end = min(end, stay.depart)
    times = [stay.arrive] if lo <= stay.arrive < lo + DAY else []
    if start >= end:
        return times
    if person.rare:
        count = 1 if day in person.rare_days else 0
    elif day in person.trip_days or rng.random() < _ABSENT:
        count = 0
    else:
        count = rng.choices(_SWIPES_PER_DAY, _SWIPE_WEIGHTS)[0]
    span = (end - start).total_seconds()
    times.extend(start + timedelta(seconds=rng.uniform(0, span)) for _ in range(count))
    return sorted(times)
