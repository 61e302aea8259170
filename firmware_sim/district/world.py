"""The district and everyone's scripted life in it (pure: one seeded
``random.Random``, no I/O).

A district has streets, communities and grid cells; buildings sit in grid
cells and hold units. Each unit has a few *slots*: one slot is one bed that
is occupied by a sequence of people over time. A unit has no more slots than
its capacity unless it is one of the small units that a scenario overcrowds.
People are placed into slot intervals in order of arrival; some of them are
movers who left another building a few days before.

Everything that happens without reacting to the server is decided here:
arrival and departure times, when (and whether) the landlord registers and
deregisters, which card is used when, trips, rare swipers, visitors, lost
cards. The landlords' reactions to cases are decided by the driver with the
per-building probabilities kept here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from server.registry.idnumber import make_id_number
from server.rules import CityRules

DAY = timedelta(days=1)
ZONE = ZoneInfo("Asia/Shanghai")
# A fixed past Monday: a 300-day run still ends before the code was written.
# Runs scored against the truth start here by default, so that a seed gives the
# same district whenever it runs; the demo ends its run today instead.
START = datetime(2026, 1, 5, tzinfo=ZONE)


def start_ending_today(days: int, now: datetime | None = None) -> datetime:
    """The start of a run of ``days`` whole days whose last day is yesterday
    and that ends at today's midnight (Asia/Shanghai): what a district shows
    then is true today, not months ago."""
    today = (now or datetime.now(ZONE)).astimezone(ZONE).date()
    return datetime.combine(today, datetime.min.time(), tzinfo=ZONE) - days * DAY

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志文辉"
_ORIGINS = ("湖南省", "广西壮族自治区", "四川省", "江西省", "河南省", "湖北省", "贵州省", "广东省")
# Current and retired area codes of those origins (a retired code stays valid).
_ID_AREAS = ("430521", "450102", "510722", "360121", "411323", "420117", "520221", "441621")


@dataclass(frozen=True)
class AreaSpec:
    level: str
    code: str
    name: str
    parent_code: str | None


@dataclass
class UnitSpec:
    key: str
    building: int
    number: str
    floor: int
    area_m2: float
    rooms: int
    capacity: int
    slots: int


@dataclass
class BuildingSpec:
    index: int
    code: str
    name: str
    address: str
    grid_code: str
    gateway_id: str
    landlord_name: str
    landlord_phone: str
    is_rental: bool
    pledge_signed: bool
    units: list[UnitSpec] = field(default_factory=list)
    # The landlord's habits: answers "has this tenant left?" prompts at all,
    # and registers an unregistered occupant once a case says so.
    answers_prompts: bool = True
    reacts_to_cases: float = 0.6


@dataclass
class CardUse:
    """A card a person carries from ``start`` until ``end`` (lost, returned,
    or None: still carried at the end of the run)."""

    value: str
    start: datetime
    end: datetime | None
    # "registration": issued under the registration; "named": a unit card
    # with the person's id; "anonymous": a unit card with no person.
    kind: str


@dataclass
class Stay:
    """One person living at one unit from ``arrive`` to ``depart`` (None:
    still there when the run ends). Registration fields marked *dynamic* are
    filled in by the driver as things actually happen."""

    person: int
    unit: str
    arrive: datetime
    depart: datetime | None
    before_start: bool
    # The landlord's plan: register at this time (None: never), and on
    # departure deregister at this time (None: never).
    register_plan: datetime | None
    deregister_plan: datetime | None
    # "", "mismatch" (card at the new building under their own name, old
    # registration left behind) or "proper" (registered with end_previous).
    move: str = ""
    cards: list[CardUse] = field(default_factory=list)
    # Lost cards: (lost at, replaced at, tried at the door later: times).
    losses: list[tuple[datetime, datetime, list[datetime]]] = field(default_factory=list)
    # dynamic
    registration_id: int | None = None
    registered_at: datetime | None = None
    registration_ended_at: datetime | None = None
    registration_end_reason: str | None = None


@dataclass
class PersonSpec:
    index: int
    id_number: str
    name: str
    phone: str
    origin: str
    rare: bool
    rare_days: frozenset[int] = frozenset()
    trip_days: frozenset[int] = frozenset()
    stays: list[Stay] = field(default_factory=list)


@dataclass(frozen=True)
class Visit:
    unit: str
    card: str
    issued: datetime
    swipes: tuple[datetime, ...]
    revoked: datetime


@dataclass
class World:
    seed: int
    days: int
    start: datetime
    areas: list[AreaSpec]
    buildings: list[BuildingSpec]
    people: list[PersonSpec]
    visits: list[Visit]

    @property
    def end(self) -> datetime:
        return self.start + self.days * DAY

    @property
    def district_code(self) -> str:
        return self.areas[0].code

    def units(self) -> dict[str, UnitSpec]:
        return {u.key: u for b in self.buildings for u in b.units}

    def stays(self) -> list[Stay]:
        return [s for p in self.people for s in p.stays]

    def day_of(self, at: datetime) -> int:
        return (at - self.start) // DAY


class _Cards:
    """Unique EM4100 numbers (10 upper-case hex digits)."""

    def __init__(self, rng: random.Random) -> None:
        self._next = rng.randrange(0x1000000000, 0x2000000000)

    def new(self) -> str:
        self._next += 1
        return f"{self._next:010X}"


def build_world(*, buildings: int, days: int, seed: int, rules: CityRules | None = None,
                start: datetime = START) -> World:
    """``start`` must be a midnight in Asia/Shanghai: days are local days."""
    rules = rules or CityRules()
    rng = random.Random(seed)
    areas, grids = _areas(buildings)
    specs = [_building(rng, i, grids[i % len(grids)], rules) for i in range(buildings)]
    end = start + days * DAY
    cards = _Cards(rng)
    intervals = _slot_intervals(rng, specs, start, end)
    people = _place_people(rng, intervals, specs, start, end, cards)
    _add_losses(rng, people, end, cards)
    visits = _visits(rng, specs, start, days, cards)
    return World(seed, days, start, areas, specs, people, visits)


# ---------------------------------------------------------------------- places


def _areas(buildings: int) -> tuple[list[AreaSpec], list[str]]:
    district = AreaSpec("district", "440699", "模拟区", None)
    areas, grids = [district], []
    streets = max(1, buildings // 60)
    for s in range(1, streets + 1):
        street = AreaSpec("street", f"440699{s:03d}", f"第{s}街道", district.code)
        areas.append(street)
        for c in range(1, 3):
            community = AreaSpec("community", f"{street.code}{c:03d}", f"第{s}街道第{c}社区", street.code)
            areas.append(community)
            for g in range(1, 3):
                grid = AreaSpec("grid", f"{community.code}G{g:02d}", f"{community.name}第{g}网格", community.code)
                areas.append(grid)
                grids.append(grid.code)
    return areas, grids


def _name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"


def _building(rng: random.Random, i: int, grid: str, rules: CityRules) -> BuildingSpec:
    n = i + 1
    is_rental = rng.random() < 0.9
    b = BuildingSpec(
        index=i, code=f"B{n:04d}", name=f"模拟楼{n}号", address=f"模拟区幸福路{n}号", grid_code=grid,
        gateway_id=f"gw-d001-b{n:04d}", landlord_name=_name(rng), landlord_phone=_phone(rng),
        is_rental=is_rental, pledge_signed=is_rental and rng.random() < 0.85,
        answers_prompts=rng.random() < 0.8, reacts_to_cases=rng.choice((0.3, 0.6, 0.9)))
    for k in range(rng.randint(4, 9)):
        floor = 1 + k // 3
        number = f"{floor}{k % 3 + 1:02d}"
        small = rng.random() < 0.1
        if small:
            area, rooms = round(rng.uniform(8.0, 14.0), 1), 1
        else:
            rooms = rng.choice((1, 1, 2, 2, 3))
            area = round(rng.uniform(14.0, 22.0) * rooms, 1)
        capacity = rules.capacity(area, rooms)
        # A third of the small units are sublet beyond what they may hold.
        slots = capacity + 1 if small and rng.random() < 0.35 else min(capacity, rng.choice((1, 1, 2, 2, 3)))
        b.units.append(UnitSpec(f"b{n:04d}-{number}", i, number, floor, area, rooms, capacity, max(1, slots)))
    return b


# ---------------------------------------------------------------------- lives


@dataclass
class _Interval:
    unit: str
    building: int
    arrive: datetime
    depart: datetime | None
    before_start: bool


def _time_of_day(rng: random.Random, day_start: datetime, lo: float = 8.0, hi: float = 22.0) -> datetime:
    return day_start + timedelta(hours=rng.uniform(lo, hi))


def _slot_intervals(rng: random.Random, specs: list[BuildingSpec], start: datetime,
                    end: datetime) -> list[_Interval]:
    """Who-lives-in-this-bed-when, without saying who yet."""
    out: list[_Interval] = []
    for b in specs:
        for u in b.units:
            for slot in range(u.slots):
                # Most beds are taken when the run starts; the rest fill up soon.
                if rng.random() < 0.85:
                    arrive, before = start - timedelta(days=rng.uniform(10, 400)), True
                else:
                    arrive, before = _time_of_day(rng, start + rng.randrange(0, 20) * DAY), False
                while arrive < end:
                    stay_days = rng.uniform(1, 3) if rng.random() < 0.04 else rng.expovariate(1 / 150)
                    depart_day = max(arrive, start) + timedelta(days=stay_days)
                    depart: datetime | None = _time_of_day(rng, _midnight(depart_day), 7.0, 20.0)
                    if depart is not None and depart <= arrive:
                        depart = arrive + timedelta(hours=rng.uniform(20, 30))
                    if depart is not None and depart >= end:
                        depart = None
                    out.append(_Interval(u.key, b.index, arrive, depart, before))
                    if depart is None:
                        break
                    arrive = _time_of_day(rng, _midnight(depart) + rng.randint(2, 25) * DAY)
                    before = False
    out.sort(key=lambda iv: iv.arrive)
    return out


def _midnight(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _register_plan(rng: random.Random, arrive: datetime) -> tuple[datetime | None, str]:
    """When the landlord registers a new arrival, and which card they hand over."""
    u = rng.random()
    if u < 0.45:
        return arrive, "registration"
    if u < 0.75:
        return arrive + timedelta(days=rng.uniform(0.1, 2.0)), "named"
    if u < 0.83:
        return arrive + timedelta(days=rng.uniform(5.0, 12.0)), "anonymous"
    return None, "anonymous"


def _place_people(rng: random.Random, intervals: list[_Interval], specs: list[BuildingSpec], start: datetime,
                  end: datetime, cards: _Cards) -> list[PersonSpec]:
    people: list[PersonSpec] = []
    # Registered people who left a building recently and could turn up elsewhere.
    movers: list[tuple[PersonSpec, Stay]] = []
    for iv in intervals:
        mover = None
        if not iv.before_start and rng.random() < 0.15:
            mover = _pick_mover(movers, iv)
        if mover is not None:
            person, old = mover
            movers.remove(mover)
            old.deregister_plan = None  # they leave the old registration behind
            stay = Stay(person.index, iv.unit, iv.arrive, iv.depart, False, None, None)
            if rng.random() < 0.5:
                stay.move, kind = "mismatch", "named"
            else:
                stay.move = "proper"
                stay.register_plan = iv.arrive + timedelta(days=rng.uniform(0.0, 1.5))
                kind = "registration" if stay.register_plan == iv.arrive else "named"
        else:
            person = _person(rng, len(people))
            people.append(person)
            stay = Stay(person.index, iv.unit, iv.arrive, iv.depart, iv.before_start, None, None)
            if iv.before_start:
                stay.register_plan, kind = iv.arrive, "registration"
            else:
                stay.register_plan, kind = _register_plan(rng, iv.arrive)
            if stay.register_plan is not None and iv.depart is not None and stay.register_plan >= iv.depart:
                stay.register_plan, kind = None, "anonymous"
            if kind != "anonymous" and rng.random() < 0.06:
                person.rare = True
        stay.cards.append(CardUse(cards.new(), max(iv.arrive, start), iv.depart, kind))
        if iv.depart is not None and stay.register_plan is not None and stay.register_plan < iv.depart:
            if rng.random() < 0.8:
                stay.deregister_plan = iv.depart + timedelta(days=rng.uniform(0.0, 2.0))
            movers.append((person, stay))
        person.stays.append(stay)
    for person in people:
        _habits(rng, person, start, end)
    return people


def _pick_mover(movers: list[tuple[PersonSpec, Stay]], iv: _Interval) -> tuple[PersonSpec, Stay] | None:
    for person, old in movers:
        assert old.depart is not None
        if (old.depart < iv.arrive <= old.depart + 10 * DAY
                and int(old.unit[1:5]) - 1 != iv.building and person.stays[-1] is old):
            return person, old
    return None


def _person(rng: random.Random, index: int) -> PersonSpec:
    birth = date(1965, 1, 1) + timedelta(days=(index * 7919) % 14000)
    area = _ID_AREAS[index % len(_ID_AREAS)]
    number = make_id_number(area, birth, index % 999 + 1)
    return PersonSpec(index, number, _name(rng), _phone(rng), _ORIGINS[index % len(_ORIGINS)], rare=False)


def _habits(rng: random.Random, person: PersonSpec, start: datetime, end: datetime) -> None:
    """Trips (never in the first days after moving in) and a rare swiper's days."""
    days = (end - start) // DAY
    first_days = {(s.arrive - start) // DAY + k for s in person.stays for k in range(6)}
    trips: set[int] = set()
    d = 0
    while d < days:
        if rng.random() < 0.01 and d not in first_days:
            length = rng.randint(2, 10)
            trips.update(range(d, d + length))
            d += length
        d += 1
    person.trip_days = frozenset(trips)
    if person.rare:
        rare, d = set(), rng.randrange(0, 8)
        while d < days + 20:
            rare.add(d)
            d += rng.randint(5, 20)
        person.rare_days = frozenset(rare)


def _add_losses(rng: random.Random, people: list[PersonSpec], end: datetime, cards: _Cards) -> None:
    """A registered card is lost now and then: the landlord revokes it and
    hands over a new one; sometimes whoever found it tries it at the door."""
    for person in people:
        for stay in person.stays:
            card = stay.cards[0]
            if card.kind != "registration" or rng.random() > 0.05:
                continue
            last = stay.depart or end
            span = (last - card.start).total_seconds()
            if span < 10 * 86400:
                continue
            lost = card.start + timedelta(seconds=rng.uniform(3 * 86400, span - 5 * 86400))
            replaced = lost + timedelta(hours=rng.uniform(4, 24))
            tries = []
            if rng.random() < 0.4:
                tried = replaced + timedelta(days=rng.uniform(1, 10))
                tries = [tried + timedelta(minutes=k) for k in range(rng.randint(1, 2))]
            card.end = lost
            stay.cards.append(CardUse(cards.new(), replaced, stay.depart, "registration"))
            stay.losses.append((lost, replaced, tries))


def _visits(rng: random.Random, specs: list[BuildingSpec], start: datetime, days: int,
            cards: _Cards) -> list[Visit]:
    """Guests: a unit card used on one day only, revoked the next morning."""
    out = []
    for b in specs:
        for u in b.units:
            for d in range(days - 1):
                if rng.random() < 0.01:
                    issued = start + d * DAY + timedelta(hours=rng.uniform(9, 12))
                    swipes = tuple(sorted(issued + timedelta(hours=rng.uniform(0.1, 8))
                                          for _ in range(rng.randint(1, 2))))
                    revoked = start + (d + 1) * DAY + timedelta(hours=rng.uniform(8, 11))
                    out.append(Visit(u.key, cards.new(), issued, swipes, revoked))
    return out
