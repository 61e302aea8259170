"""Ground truth: what really happened in the simulated district, and which
incidents a perfect reconciliation engine would have turned into cases.

Computed after the run from the scripted lives (where people really were)
and from the registration record as the simulation actually made it (the
driver fills each stay's registration fields), never from the engine's cases.

Incidents, each with the case kinds that rightly point at it:

* unregistered occupancy: someone lives at a unit past the registration
  deadline without a registration there. Start: moving in. A person who is
  still registered elsewhere is equally well caught by a mismatch case.
* departure without deregistration: a registered person left and neither the
  landlord's deregistration nor a registration elsewhere ended the record.
  Start: the true departure. A mismatch case (seen elsewhere) catches it too.
* person-address mismatch: a mover living at a new address while still
  registered at the old one. Start: arrival at the new address.
* overcrowding: more occupants than the unit's capacity, for longer than it
  takes to tell an occupant from a visitor (``living_min_days``).
* unknown credential: a revoked (lost) card tried at the door.

``fixed_at`` is when the record was put right by someone other than the
engine (a late registration, a deregistration): an incident fixed before a
case could possibly be due is not held against recall.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from firmware_sim.district.world import Stay, World
from server.rules import CityRules

# Ends that are a deregistration: the landlord's, or a registration elsewhere.
_DEREGISTERED = ("deregistered", "moved")


@dataclass(frozen=True)
class Incident:
    kind: str
    start: datetime
    kinds: tuple[str, ...]  # case kinds that rightly detect it
    unit: str | None = None
    person: int | None = None
    registration_id: int | None = None
    card: str | None = None
    end: datetime | None = None
    fixed_at: datetime | None = None


@dataclass(frozen=True)
class TrueRatio:
    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None


def incidents(world: World, rules: CityRules) -> list[Incident]:
    out: list[Incident] = []
    # Departures are to be reported within the same period as arrivals.
    deadline = timedelta(days=rules.registration_deadline_days)
    for person in world.people:
        for i, stay in enumerate(person.stays):
            previous = person.stays[i - 1] if i else None
            out.extend(_stay_incidents(world, stay, previous, deadline))
            for _, _, tries in stay.losses:
                if tries and tries[0] < world.end:
                    out.append(Incident("unknown_credential", tries[0], ("unknown_credential",),
                                        unit=stay.unit, card=stay.cards[0].value))
    out.extend(_overcrowding(world, rules))
    return out


def _stay_incidents(world: World, stay: Stay, previous: Stay | None, deadline: timedelta) -> list[Incident]:
    out = []
    lives_until = stay.depart or world.end
    registered_in_time = stay.registered_at is not None and stay.registered_at <= stay.arrive + deadline
    elsewhere = previous is not None and _active_at(previous, stay.arrive)
    if not stay.before_start and lives_until > stay.arrive + deadline and not registered_in_time:
        kinds = ("unregistered_occupant", "address_mismatch") if elsewhere else ("unregistered_occupant",)
        out.append(Incident("unregistered_occupant", stay.arrive, kinds, unit=stay.unit, person=stay.person,
                            fixed_at=stay.registered_at))
    if elsewhere and stay.move == "mismatch" and lives_until > stay.arrive:
        out.append(Incident("address_mismatch", stay.arrive, ("address_mismatch", "unregistered_occupant"),
                            unit=stay.unit, person=stay.person))
    fixed = stay.registration_ended_at if stay.registration_end_reason in _DEREGISTERED else None
    if (stay.depart is not None and stay.registered_at is not None and stay.registered_at < stay.depart
            and _active_at(stay, stay.depart) and (fixed is None or fixed > stay.depart + deadline)):
        out.append(Incident("presumed_departure", stay.depart, ("presumed_departure", "address_mismatch"),
                            unit=stay.unit, person=stay.person, registration_id=stay.registration_id,
                            fixed_at=fixed))
    return out


def _active_at(stay: Stay, at: datetime) -> bool:
    return (stay.registered_at is not None and stay.registered_at <= at
            and (stay.registration_ended_at is None or stay.registration_ended_at > at))


def _overcrowding(world: World, rules: CityRules) -> list[Incident]:
    units = world.units()
    moves: dict[str, list[tuple[datetime, int]]] = {}
    for stay in world.stays():
        moves.setdefault(stay.unit, []).append((stay.arrive, 1))
        if stay.depart is not None:
            moves[stay.unit].append((stay.depart, -1))
    out = []
    least = timedelta(days=rules.living_min_days)
    for key, changes in moves.items():
        capacity = units[key].capacity
        count, began = 0, None
        # Departures first at equal times: a bed handed over is not a crowd.
        for at, delta in sorted(changes, key=lambda c: (c[0], c[1])):
            count += delta
            if count > capacity and began is None:
                began = max(at, world.start)
            elif count <= capacity and began is not None:
                if at - began > least:
                    out.append(Incident("overcrowding", began, ("overcrowding",), unit=key, end=at))
                began = None
        if began is not None and world.end - began > least:
            out.append(Incident("overcrowding", began, ("overcrowding",), unit=key))
    return out


def true_rates(world: World) -> dict[str, TrueRatio]:
    """The four rates as they really are at the end of the run, for the whole
    district: residence registration (living people registered where they
    live), rental registration (buildings with tenants that are registered as
    rentals), person-address consistency (active registrations of people who
    really live there) and pledge (registered rentals with a signed pledge)."""
    end = world.end
    living = [s for s in world.stays() if s.arrive < end and s.depart is None]
    active = [s for s in world.stays() if _active_at(s, end - timedelta(microseconds=1))]
    occupied = {world.units()[s.unit].building for s in living}
    active_ids = {id(s) for s in active}
    rentals = [b for b in world.buildings if b.is_rental]
    return {
        "registration": TrueRatio(sum(1 for s in living if id(s) in active_ids), len(living)),
        "rental": TrueRatio(sum(1 for b in world.buildings if b.index in occupied and b.is_rental), len(occupied)),
        "consistency": TrueRatio(sum(1 for s in active if s.depart is None), len(active)),
        "pledge": TrueRatio(sum(1 for b in rentals if b.pledge_signed), len(rentals)),
    }
