"""Accelerated time over the simulated district.

Each simulated day: the landlords' scripted steps and their reactions to
cases, in time order, in one write transaction; the day's card reads
published by the buildings' gateways over MQTT and stored by the real ingest
service (the driver waits for every acknowledgement, not for a clock); then
reconciliation at the end of the day (catch-up and sweep) and the cases it
opened and closed, reported through ``on_case``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from firmware_sim.district import cameras as camera_sim
from firmware_sim.district import score as scoring
from firmware_sim.district import truth
from firmware_sim.district.activity import day_swipes
from firmware_sim.district.gateways import GatewayFleet, Read
from firmware_sim.district.landlords import Book, Landlords
from firmware_sim.district.patrols import Coordinators
from firmware_sim.district.runtime import Runtime, running
from firmware_sim.district.taskwork import TaskDesk
from firmware_sim.district.world import DAY, START, CardUse, Stay, World, build_world
from rentgate.lang import tr
from server.db.models import cases, events
from server.reconcile.rates import compute_rates
from server.rules import CityRules
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

Step = Callable[[sa.Connection, datetime], object]


@dataclass(frozen=True)
class CaseEvent:
    """A case opened or closed, for the demo's narration."""

    action: str  # "opened" or "closed"
    at: datetime
    case_id: int
    kind: str
    building: str | None
    unit: str | None
    resolution: str | None = None


@dataclass
class DistrictOptions:
    buildings: int = 200
    days: int = 120
    seed: int = 7
    database_url: str | None = None
    mqtt_url: str | None = None
    rules: CityRules | None = None
    workdir: Path | None = None
    # The first simulated day (a local midnight); None: the fixed START.
    start: datetime | None = None
    # Grid coordinators patrol the units (firmware_sim/district/patrols.py).
    patrols: bool = False
    # Unit door cameras and hidden occupants (firmware_sim/district/cameras.py).
    cameras: camera_sim.CameraOptions = field(default_factory=camera_sim.CameraOptions)


class Agenda:
    """Steps at points in simulated time, taken in time order."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, str, Step]] = []
        self._order = itertools.count()

    def at(self, when: datetime, what: str, step: Step) -> None:
        heapq.heappush(self._heap, (when, next(self._order), what, step))

    def due(self, before: datetime) -> list[tuple[datetime, str, Step]]:
        out = []
        while self._heap and self._heap[0][0] < before:
            when, _, what, step = heapq.heappop(self._heap)
            out.append((when, what, step))
        return out


class District:
    def __init__(self, world: World, rt: Runtime, rules: CityRules, fleet: GatewayFleet,
                 on_case: Callable[[CaseEvent], None] | None = None, *, patrols: bool = False,
                 cameras: camera_sim.CameraOptions | None = None) -> None:
        self.world = world
        self.camera_options = cameras or camera_sim.CameraOptions()
        self.camera_units = set(camera_sim.camera_units(world, self.camera_options.share))
        # Hidden occupants (no card at the start; one found may get one later).
        self.hidden = {(s.unit, s.person) for s in world.stays() if not s.cards}
        self.crossings = 0
        self.rt = rt
        self.rules = rules
        self.fleet = fleet
        self.on_case = on_case
        self.book = Book(world)
        self.landlords = Landlords(self.book, rt.vault, rules)
        self.agenda = Agenda()
        self.coordinators = Coordinators(rules, world.seed, self.agenda.at) if patrols else None
        self.desk = TaskDesk(rules, world.seed, self.agenda.at) if patrols else None
        self.rng = random.Random(f"{world.seed}:reactions")
        self.last_case_id = 0
        self.open_cases: dict[int, str] = {}
        self.opened: dict[str, int] = {}
        self.closed: dict[str, int] = {}
        self.events = 0
        # Where the wall-clock time went: registry steps, making the day's
        # reads, publishing until acknowledged, reconciliation.
        self.seconds: dict[str, float] = {}

    # ------------------------------------------------------------------ script

    def setup(self) -> None:
        """Areas, buildings, gateways and units at the start, and everyone who
        already lived there, registered with their cards."""
        start = self.world.start
        with write_transaction(self.rt.engine) as conn:
            self.landlords.setup(conn, start)
            for stay in self.world.stays():
                if stay.before_start:
                    self.landlords.register(conn, start, stay)
            if self.coordinators is not None:
                self.coordinators.setup(conn, start, list(self.book.unit_ids.values()))
            if self.desk is not None and self.coordinators is not None:
                self.desk.setup(conn, start, self.coordinators.user_of_grid)
            self._map_camera_doors(conn, start)
        self._schedule_script()

    def _map_camera_doors(self, conn: sa.Connection, now: datetime) -> None:
        """The landlord says which unit each camera's door serves (the doors API's service)."""
        from server.registry.doors import set_door

        units = self.world.units()
        for key in sorted(self.camera_units):
            gateway = self.world.buildings[units[key].building].gateway_id
            set_door(conn, now, "sim:landlord", gateway, camera_sim.door_of(key), unit_id=self.book.unit_ids[key],
                     camera=True)

    def _schedule_script(self) -> None:
        ll, a = self.landlords, self.agenda
        for stay in self.world.stays():
            if not stay.cards:
                continue  # a hidden occupant: nothing the landlord does, nothing a card shows
            if not stay.before_start:
                a.at(stay.arrive, "arrive", partial(ll.arrive, stay=stay))
                if stay.register_plan is not None and stay.register_plan > stay.arrive:
                    a.at(stay.register_plan, "register", partial(ll.register, stay=stay))
            if stay.depart is not None:
                if stay.deregister_plan is not None:
                    a.at(stay.deregister_plan, "deregister", partial(ll.deregister, stay=stay))
                elif stay.register_plan is None:
                    a.at(stay.depart + timedelta(hours=2), "card back",
                         partial(self._card_back, stay=stay))
            for i, (_, replaced, _) in enumerate(stay.losses):
                lost, new = stay.cards[i].value, stay.cards[i + 1].value
                a.at(replaced, "replace", partial(ll.replace_lost, stay=stay, lost_value=lost, new_value=new))
        for visit in self.world.visits:
            a.at(visit.issued - timedelta(minutes=1), "guest", partial(ll.guest_card, visit=visit))
            a.at(visit.revoked, "guest back", partial(ll.guest_card_back, visit=visit))

    def _card_back(self, conn: sa.Connection, now: datetime, stay: Stay) -> None:
        """A tenant the landlord never meant to register leaves and returns
        the card. If a case made the landlord register them meanwhile, the
        landlord has learnt the habit and deregisters them too."""
        if stay.registration_id is not None and stay.registration_ended_at is None:
            self.landlords.deregister(conn, now, stay)
        else:
            self.landlords.take_back_cards(conn, now, stay)

    # ------------------------------------------------------------------ one day

    async def day(self, day: int) -> None:
        lo = self.world.start + day * DAY
        hi = lo + DAY
        t0 = time.perf_counter()
        await asyncio.to_thread(self._registry_steps, hi)
        t1 = time.perf_counter()
        swipes = await asyncio.to_thread(day_swipes, self.world, day)
        t2 = time.perf_counter()
        per_gateway: dict[str, list[Read]] = {}
        for s in swipes:
            granted = s.granted and not (s.card in self.book.server_revoked
                                         and self.book.server_revoked[s.card] <= s.at)
            gw = self.world.buildings[s.building].gateway_id
            per_gateway.setdefault(gw, []).append(Read(s.at, s.card, granted))
        for gw, reads in per_gateway.items():
            self.fleet.publish(gw, reads)
        self.events += len(swipes)
        if self.camera_units:
            units = self.world.units()
            crossings: dict[str, list[camera_sim.Crossing]] = {}
            for c in camera_sim.day_crossings(self.world, day, self.camera_units, swipes, self.camera_options):
                gw = self.world.buildings[units[c.unit].building].gateway_id
                crossings.setdefault(gw, []).append(c)
            for gw, items in crossings.items():
                self.fleet.publish_crossings(gw, items)
                self.crossings += len(items)
        await self.fleet.acknowledged()
        t3 = time.perf_counter()
        await asyncio.to_thread(self._reconcile, hi)
        t4 = time.perf_counter()
        for part, seconds in (("registry", t1 - t0), ("swipes", t2 - t1), ("ingest", t3 - t2),
                              ("reconcile", t4 - t3)):
            self.seconds[part] = self.seconds.get(part, 0.0) + seconds

    def _registry_steps(self, before: datetime) -> None:
        due = self.agenda.due(before)
        if not due:
            return
        with write_transaction(self.rt.engine) as conn:
            for when, _what, step in due:
                step(conn, when)

    def _reconcile(self, now: datetime) -> None:
        self.rt.reconciler.catch_up(now)
        result = self.rt.reconciler.sweep(now)
        for reg_id in result.ended_registrations:
            self._ended_by_server(reg_id, now)
        self._collect_cases(now)
        if self.desk is not None:
            with self.rt.engine.connect() as conn:
                self.desk.new_tasks(conn, now)

    def _ended_by_server(self, reg_id: int, now: datetime) -> None:
        stay = self.book.stay_of_registration.get(reg_id)
        if stay is None:
            return
        self.book.ended(reg_id, now, "auto")
        for card in stay.cards:
            self.book.server_revoked.setdefault(card.value, now)

    # ------------------------------------------------------------------ cases

    def _collect_cases(self, now: datetime) -> None:
        c = cases.c
        with self.rt.engine.connect() as conn:
            new = conn.execute(sa.select(c.id, c.kind, c.opened_at, c.building_id, c.unit_id, c.person_id,
                                         c.registration_id, c.credential_id)
                               .where(c.id > self.last_case_id).order_by(c.id)).all()
            gone = conn.execute(sa.select(c.id, c.kind, c.closed_at, c.building_id, c.unit_id, c.resolution)
                                .where(c.id.in_(list(self.open_cases)), c.closed_at.is_not(None))).all() \
                if self.open_cases else []
        for row in new:
            self.last_case_id = row.id
            self.open_cases[row.id] = row.kind
            self.opened[row.kind] = self.opened.get(row.kind, 0) + 1
            self._notify("opened", row.opened_at, row.id, row.kind, row.building_id, row.unit_id, None)
            self._react(row, now)
        for row in gone:
            self.open_cases.pop(row.id, None)
            self.closed[row.kind] = self.closed.get(row.kind, 0) + 1
            self._notify("closed", row.closed_at, row.id, row.kind, row.building_id, row.unit_id, row.resolution)

    def _notify(self, action: str, at: datetime, case_id: int, kind: str, building_id: int | None,
                unit_id: int | None, resolution: str | None) -> None:
        if self.on_case is None:
            return
        building = self.world.buildings[self.book.building_index[building_id]].code \
            if building_id in self.book.building_index else None
        unit = self.book.unit_keys.get(unit_id) if unit_id is not None else None
        self.on_case(CaseEvent(action, at, case_id, kind, building, unit, resolution))

    def _case_stay(self, row: Any) -> Stay | None:
        if row.registration_id is not None and row.kind == "presumed_departure":
            return self.book.stay_of_registration.get(row.registration_id)
        person = self.book.person_index.get(row.person_id) if row.person_id is not None else None
        if person is None and row.credential_id is not None:
            person = self.book.card_holder.get(self.book.card_of_credential.get(row.credential_id, ""))
        unit = self.book.unit_keys.get(row.unit_id) if row.unit_id is not None else None
        if person is None and unit is not None and row.kind == "unregistered_occupant" and row.credential_id is None:
            # A camera case: the landlord knows who the unit's hidden occupant is.
            hidden = [s for s in self.world.stays() if (s.unit, s.person) in self.hidden and s.unit == unit
                      and s.arrive <= row.opened_at]
            return hidden[-1] if hidden else None
        if person is None or unit is None:
            return None
        found = [s for s in self.book.person(person).stays if s.unit == unit]
        return found[-1] if found else None

    def _react(self, row: Any, now: datetime) -> None:
        """The landlord's reaction to a new case, scheduled in simulated time."""
        stay = self._case_stay(row)
        if stay is None:
            return
        building = self.book.building_of(stay)
        if row.kind == "presumed_departure":
            if building.answers_prompts:
                when = now + timedelta(days=self.rng.uniform(0.0, 5.0))
                self.agenda.at(when, "answer", partial(self.landlords.answer_departure, case_id=row.id, stay=stay))
        elif row.kind in ("unregistered_occupant", "address_mismatch"):
            if self.rng.random() < building.reacts_to_cases:
                when = now + timedelta(days=self.rng.uniform(0.3, 3.0))
                self.agenda.at(when, "register after case", partial(self._late_register, stay=stay))

    def _late_register(self, conn: sa.Connection, now: datetime, stay: Stay) -> None:
        if stay.depart is not None and stay.depart <= now:
            return  # gone already: nobody to register
        if not stay.cards:
            # A hidden occupant found by a camera: registered with a card of
            # their own, which they use from then on like everyone else.
            stay.cards.append(CardUse(f"F{stay.person:09X}", now, stay.depart, "registration"))
        self.landlords.register(conn, now, stay)

    # ------------------------------------------------------------------ the result

    def seen_cases(self) -> list[scoring.SeenCase]:
        c = cases.c
        with self.rt.engine.connect() as conn:
            rows = conn.execute(sa.select(c.id, c.kind, c.subject, c.opened_at, c.closed_at, c.building_id,
                                          c.unit_id, c.person_id, c.registration_id, c.credential_id)
                                .order_by(c.id)).all()
        out = []
        for r in rows:
            person = self.book.person_index.get(r.person_id) if r.person_id is not None else None
            card = self.book.card_of_credential.get(r.credential_id) if r.credential_id is not None else None
            if person is None and card is not None:
                person = self.book.card_holder.get(card)
            if r.kind == "unknown_credential":
                card = r.subject.rsplit("/", 1)[-1]
            out.append(scoring.SeenCase(
                r.id, r.kind, r.opened_at, r.closed_at,
                self.book.unit_keys.get(r.unit_id) if r.unit_id is not None else None,
                self.book.building_index.get(r.building_id) if r.building_id is not None else None,
                person, r.registration_id, card))
        return out

    def stored_reads(self) -> int:
        with self.rt.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(events)
                                    .where(events.c.kind == "card_read")).scalar_one())

    def computed_rates(self) -> dict[str, tuple[int, int] | None]:
        with self.rt.engine.connect() as conn:
            area = compute_rates(conn, self.rules, self.world.end).get(self.world.district_code)
        if area is None:
            return {}
        return {name: (getattr(area, name).numerator, getattr(area, name).denominator) for name in scoring.RATES}

    def result(self) -> dict[str, Any]:
        world, rules = self.world, self.rules
        seen = self.seen_cases()
        found = truth.incidents(world, rules)
        unit_buildings = {k: u.building for k, u in world.units().items()}
        kinds = scoring.score(seen, found, rules, world.end, unit_buildings)
        stored = self.stored_reads()
        return {
            "buildings": len(world.buildings), "days": world.days, "seed": world.seed,
            "people": len(world.people), "stays": len(world.stays()),
            "units": sum(len(b.units) for b in world.buildings),
            "events": self.events, "events_published": self.fleet.stats.published, "events_stored": stored,
            "events_lost": self.fleet.stats.published - stored,
            "kinds": kinds,
            "rates": scoring.rates_json(truth.true_rates(world), self.computed_rates()),
            "targets_met": scoring.targets_met(kinds),
            "cameras": self._camera_result(seen, found),
            "registry_steps_refused": self.landlords.refused,
            "patrols": self.coordinators.patrols if self.coordinators is not None else 0,
            "task_steps": self.desk.steps if self.desk is not None else 0,
            "start": world.start.isoformat(), "end": world.end.isoformat(),
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
            "missed": [_incident_json(i) for i in scoring.missed(seen, found, rules, world.end, unit_buildings)
                       if i.kind in scoring.TARGET_KINDS][:20],
            "wrong": [_case_json(c) for c in scoring.wrong(seen, found, unit_buildings)
                      if c.kind in scoring.TARGET_KINDS][:20],
        }


    def _camera_result(self, seen: list[scoring.SeenCase], found: list[truth.Incident]) -> dict[str, Any]:
        """What the cameras saw, and the recall of hidden occupants and of
        overcrowding (run again with --cameras 0 on the same seed to compare)."""
        world, rules = self.world, self.rules
        hidden = self.hidden
        unit_buildings = {k: u.building for k, u in world.units().items()}
        due = [i for i in found if i.kind == "unregistered_occupant" and (i.unit, i.person) in hidden
               and scoring.is_due(i, rules.registration_deadline_days, world.end)]
        hit = sum(1 for i in due if any(scoring.matches(c, i, unit_buildings) for c in seen))
        camera_cases = [c for c in seen if c.kind == "unregistered_occupant" and c.person is None]
        right = sum(1 for c in camera_cases if any(scoring.matches(c, i, unit_buildings) for i in found))
        return {"share": self.camera_options.share, "hidden_share": self.camera_options.hidden,
                "miss_rate": self.camera_options.miss, "double_rate": self.camera_options.double,
                "units_with_camera": len(self.camera_units), "hidden_occupants": len(hidden),
                "crossings": self.crossings, "hidden_due": len(due), "hidden_found": hit,
                "hidden_recall": round(hit / len(due), 3) if due else None,
                "camera_cases": len(camera_cases),
                "camera_case_precision": round(right / len(camera_cases), 3) if camera_cases else None}


def _incident_json(i: truth.Incident) -> dict[str, Any]:
    return {"kind": i.kind, "start": i.start.isoformat(), "unit": i.unit, "person": i.person,
            "registration_id": i.registration_id}


def _case_json(c: scoring.SeenCase) -> dict[str, Any]:
    return {"id": c.id, "kind": c.kind, "opened_at": c.opened_at.isoformat(), "unit": c.unit, "person": c.person,
            "registration_id": c.registration_id}


async def run_district(options: DistrictOptions, *, on_case: Callable[[CaseEvent], None] | None = None,
                       progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build the world, run it day by day against the real server parts, and
    score the engine's cases against the truth."""
    started = time.perf_counter()
    rules = options.rules or CityRules()
    world = build_world(buildings=options.buildings, days=options.days, seed=options.seed, rules=rules,
                        start=options.start or START)
    if options.cameras.hidden > 0:
        camera_sim.add_hidden(world, options.cameras.hidden)
    with tempfile.TemporaryDirectory(prefix="rentgate-district-") as tmp:
        workdir = options.workdir or Path(tmp)
        async with running(workdir, rules, database_url=options.database_url, mqtt_url=options.mqtt_url) as rt:
            fleet = GatewayFleet(rt.mqtt_url)
            fleet_task = asyncio.create_task(fleet.run(), name="district-gateways")
            try:
                district = District(world, rt, rules, fleet, on_case, patrols=options.patrols,
                                    cameras=options.cameras)
                t0 = time.perf_counter()
                await asyncio.to_thread(district.setup)
                district.seconds["setup"] = time.perf_counter() - t0
                for day in range(world.days):
                    await district.day(day)
                    if progress is not None and (day % 7 == 6 or day == world.days - 1):
                        progress(tr(f"第 {day + 1}/{world.days} 天：刷卡 {district.events} 次，"
                                    f"已发现案件 {sum(district.opened.values())} 件，"
                                    f"待处理 {len(district.open_cases)} 件，用时 {time.perf_counter() - started:.0f} 秒",
                                    f"day {day + 1}/{world.days}: {district.events} card reads, "
                                    f"cases opened {sum(district.opened.values())}, "
                                    f"open now {len(district.open_cases)}, "
                                    f"{time.perf_counter() - started:.0f} s"))
                t0 = time.perf_counter()
                result = await asyncio.to_thread(district.result)
                result["seconds"]["score"] = round(time.perf_counter() - t0, 2)
            finally:
                fleet_task.cancel()
                await asyncio.gather(fleet_task, return_exceptions=True)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    return result
