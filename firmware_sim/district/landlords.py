"""Everything the simulated people do to the registry, through the real
registry functions (server.registry.service, server.reconcile.cases), each
in a savepoint of the caller's write transaction so that one refused step
does not undo the rest of the day.

The simulation keeps its own book of what it did (the stays' registration
fields, the cards' credential ids): the ground truth is computed from that
book and from where people really were, never from the engine's cases.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from firmware_sim.district.world import BuildingSpec, PersonSpec, Stay, UnitSpec, Visit, World
from server.errors import ServerError
from server.reconcile import cases as case_ops
from server.registry import service as registry
from server.registry.pii import PiiVault
from server.rules import CityRules

log = logging.getLogger(__name__)

LANDLORD = "sim:landlord"
SETUP = "sim:setup"
EM4100 = "em4100"


class Book:
    """Database ids of the simulation's things, both ways."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.units = world.units()
        self.unit_ids: dict[str, int] = {}
        self.unit_keys: dict[int, str] = {}
        self.building_ids: dict[int, int] = {}
        self.building_index: dict[int, int] = {}
        self.person_ids: dict[int, int] = {}
        self.person_index: dict[int, int] = {}
        self.stay_of_registration: dict[int, Stay] = {}
        self.card_ids: dict[str, int] = {}
        self.card_of_credential: dict[int, str] = {}
        self.card_holder: dict[str, int] = {}
        # Cards the server revoked on its own (a registration the engine ended).
        self.server_revoked: dict[str, datetime] = {}

    def person(self, index: int) -> PersonSpec:
        return self.world.people[index]

    def building_of(self, stay: Stay) -> BuildingSpec:
        return self.world.buildings[self.units[stay.unit].building]

    def card_issued(self, value: str, credential_id: int, holder: int | None) -> None:
        self.card_ids[value] = credential_id
        self.card_of_credential[credential_id] = value
        if holder is not None:
            self.card_holder[value] = holder

    def registered(self, stay: Stay, registration_id: int, at: datetime) -> None:
        stay.registration_id, stay.registered_at = registration_id, at
        stay.registration_ended_at, stay.registration_end_reason = None, None
        self.stay_of_registration[registration_id] = stay

    def ended(self, registration_id: int, at: datetime, reason: str) -> None:
        stay = self.stay_of_registration.get(registration_id)
        if stay is not None and stay.registration_ended_at is None:
            stay.registration_ended_at, stay.registration_end_reason = at, reason


class Landlords:
    def __init__(self, book: Book, vault: PiiVault, rules: CityRules) -> None:
        self.book = book
        self.vault = vault
        self.rules = rules
        self.refused = 0

    def _try(self, conn: sa.Connection, what: str, step: Callable[[], None]) -> bool:
        """Run ``step()`` in a savepoint; a refusal is logged and counted."""
        savepoint = conn.begin_nested()
        try:
            step()
        except ServerError as exc:
            savepoint.rollback()
            self.refused += 1
            log.info("%s refused: %s", what, exc)
            return False
        savepoint.commit()
        return True

    # ------------------------------------------------------------------ setup

    def setup(self, conn: sa.Connection, now: datetime) -> None:
        from server.access.registry import assign_gateway

        world = self.book.world
        for area in world.areas:
            registry.create_area(conn, now, SETUP, level=area.level, code=area.code, name=area.name,
                                 parent_code=area.parent_code)
        for b in world.buildings:
            body = registry.create_building(
                conn, now, SETUP, name=b.name, code=b.code, address=b.address, grid_code=b.grid_code,
                landlord_name=b.landlord_name, landlord_phone=b.landlord_phone, is_rental=b.is_rental,
                pledge_signed_at=now if b.pledge_signed else None, rooms=sum(u.rooms for u in b.units))
            self.book.building_ids[b.index] = body["id"]
            self.book.building_index[body["id"]] = b.index
            assign_gateway(conn, now, b.gateway_id, body["id"])
            for u in b.units:
                self._unit(conn, now, body["id"], u)

    def _unit(self, conn: sa.Connection, now: datetime, building_id: int, u: UnitSpec) -> None:
        body = registry.create_unit(conn, now, SETUP, self.rules, building_id=building_id, number=u.number,
                                    area_m2=u.area_m2, rooms=u.rooms, floor=u.floor)
        self.book.unit_ids[u.key] = body["id"]
        self.book.unit_keys[body["id"]] = u.key

    # ------------------------------------------------------------------ tenants

    def _fields(self, person: PersonSpec) -> registry.PersonFields:
        return registry.PersonFields(id_number=person.id_number, name=person.name, phone=person.phone,
                                     origin=person.origin)

    def _person_id(self, conn: sa.Connection, now: datetime, person: PersonSpec) -> int:
        known = self.book.person_ids.get(person.index)
        if known is not None:
            return known
        ref = registry.upsert_person(conn, now, LANDLORD, self.vault, self._fields(person))
        self.book.person_ids[person.index] = ref.id
        self.book.person_index[ref.id] = person.index
        return ref.id

    def register(self, conn: sa.Connection, now: datetime, stay: Stay, *, actor: str = LANDLORD) -> bool:
        """Register the stay's person at its unit with the card they carry
        (linking a card the landlord already handed to the unit)."""
        if stay.registered_at is not None and stay.registration_ended_at is None:
            return False
        person = self.book.person(stay.person)
        # The card they carry now (a lost one's replacement is in the future).
        # (A hidden occupant has none: registered without a card.)
        card = next((c for c in reversed(stay.cards) if c.start <= now), stay.cards[0] if stay.cards else None)

        def step() -> None:
            person_id = self._person_id(conn, now, person)
            out = registry.register(conn, now, actor, self.vault, unit_id=self.book.unit_ids[stay.unit],
                                    person=person_id, arrived_at=stay.arrive, source="landlord",
                                    end_previous=True, credential=(EM4100, card.value) if card else None)
            self._ended_previous(stay, now)
            self.book.registered(stay, out.body["id"], now)
            if card is not None and out.body.get("credential_id") is not None:
                self.book.card_issued(card.value, out.body["credential_id"], stay.person)

        return self._try(conn, f"registering person {person.index} at {stay.unit}", step)

    def _ended_previous(self, stay: Stay, now: datetime) -> None:
        """end_previous ended the person's registration elsewhere, if any."""
        for other in self.book.person(stay.person).stays:
            if other is not stay and other.registration_id is not None and other.registration_ended_at is None:
                self.book.ended(other.registration_id, now, "moved")

    def hand_card(self, conn: sa.Connection, now: datetime, stay: Stay) -> None:
        """A card for the unit without registering (yet): named when the
        landlord took the tenant's details, anonymous otherwise."""
        card = stay.cards[0]
        person = self.book.person(stay.person)

        def step() -> None:
            person_id = self._person_id(conn, now, person) if card.kind == "named" else None
            out = registry.issue_unit_credential(conn, now, LANDLORD, unit_id=self.book.unit_ids[stay.unit],
                                                 fmt=EM4100, value=card.value, person_id=person_id)
            self.book.card_issued(card.value, out.body["id"], stay.person)

        self._try(conn, f"card for {stay.unit}", step)

    def arrive(self, conn: sa.Connection, now: datetime, stay: Stay) -> None:
        if stay.cards[0].kind == "registration":
            self.register(conn, now, stay)
        else:
            self.hand_card(conn, now, stay)

    def deregister(self, conn: sa.Connection, now: datetime, stay: Stay) -> None:
        if stay.registration_id is None or stay.registration_ended_at is not None:
            return
        reg_id = stay.registration_id
        departed = min(stay.depart or now, now)

        def step() -> None:
            registry.deregister(conn, now, LANDLORD, reg_id, departed_at=departed)
            self.book.ended(reg_id, now, "deregistered")

        if self._try(conn, f"deregistering {reg_id}", step):
            self.take_back_cards(conn, now, stay)

    def take_back_cards(self, conn: sa.Connection, now: datetime, stay: Stay) -> None:
        """The landlord revokes unit cards the tenant returned (a card under a
        registration went with the deregistration)."""
        for card in stay.cards:
            cred = self.book.card_ids.get(card.value)
            if cred is not None:
                self._revoke(conn, now, cred, quiet=True)

    def _revoke(self, conn: sa.Connection, now: datetime, credential_id: int, *, quiet: bool = False) -> None:
        savepoint = conn.begin_nested()
        try:
            registry.revoke_credential(conn, now, LANDLORD, credential_id)
        except ServerError as exc:
            savepoint.rollback()
            if not quiet:
                self.refused += 1
                log.info("revoking credential %s refused: %s", credential_id, exc)
            return
        savepoint.commit()

    def replace_lost(self, conn: sa.Connection, now: datetime, stay: Stay, lost_value: str, new_value: str) -> None:
        """A lost card: revoke it, hand over a new one in the tenant's name."""
        cred = self.book.card_ids.get(lost_value)
        if cred is not None:
            self._revoke(conn, now, cred, quiet=True)
        person_id = self.book.person_ids.get(stay.person)

        def step() -> None:
            out = registry.issue_unit_credential(conn, now, LANDLORD, unit_id=self.book.unit_ids[stay.unit],
                                                 fmt=EM4100, value=new_value, person_id=person_id)
            self.book.card_issued(new_value, out.body["id"], stay.person)

        self._try(conn, f"replacing a lost card at {stay.unit}", step)

    def guest_card(self, conn: sa.Connection, now: datetime, visit: Visit) -> None:
        def step() -> None:
            out = registry.issue_unit_credential(conn, now, LANDLORD, unit_id=self.book.unit_ids[visit.unit],
                                                 fmt=EM4100, value=visit.card)
            self.book.card_issued(visit.card, out.body["id"], None)

        self._try(conn, f"guest card at {visit.unit}", step)

    def guest_card_back(self, conn: sa.Connection, now: datetime, visit: Visit) -> None:
        cred = self.book.card_ids.get(visit.card)
        if cred is not None:
            self._revoke(conn, now, cred)

    # ------------------------------------------------------------------ answers to cases

    def answer_departure(self, conn: sa.Connection, now: datetime, case_id: int, stay: Stay) -> None:
        """The truth, as the landlord knows it."""
        gone = stay.depart is not None and stay.depart <= now
        reg_id = stay.registration_id

        def step() -> None:
            case_ops.answer_departure(conn, now, LANDLORD, case_id, still_living=not gone,
                                      departed_at=stay.depart if gone else None)
            if gone and reg_id is not None:
                self.book.ended(reg_id, now, "answered")

        self._try(conn, f"answering case {case_id}", step)
