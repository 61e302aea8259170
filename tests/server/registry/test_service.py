"""The registry's rules, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.access.registry import assign_gateway
from server.db.models import credentials, history, persons, registrations
from server.registry import service
from server.registry.idnumber import make_id_number
from server.registry.pii import PiiVault
from server.registry.service import PersonFields
from server.rules import CityRules
from server.web.errors import Conflict, InvalidInput

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ACTOR = "test:landlord"
VAULT = PiiVault.from_master(os.urandom(32))
RULES = CityRules()
ALICE = make_id_number("440106", date(1990, 5, 17), 124)
BOB = make_id_number("320102", date(1985, 1, 2), 331)


@pytest.fixture
def conn(engine: sa.Engine) -> Iterator[sa.Connection]:
    with engine.connect() as connection:
        yield connection


@pytest.fixture
def place(conn: sa.Connection) -> dict[str, int]:
    """A district down to two units in two buildings, the first with a gateway."""
    service.create_area(conn, NOW, ACTOR, level="district", code="440604", name="禅城区", parent_code=None)
    service.create_area(conn, NOW, ACTOR, level="street", code="440604001", name="祖庙街道", parent_code="440604")
    service.create_area(conn, NOW, ACTOR, level="community", code="440604001001", name="岭南社区",
                        parent_code="440604001")
    service.create_area(conn, NOW, ACTOR, level="grid", code="440604001001-01", name="一网格",
                        parent_code="440604001001")
    one = service.create_building(conn, NOW, ACTOR, name="岭南大街12号", code="B12", grid_code="440604001001-01",
                                  is_rental=True)
    two = service.create_building(conn, NOW, ACTOR, name="岭南大街14号", code="B14", grid_code="440604001001-01")
    u1 = service.create_unit(conn, NOW, ACTOR, RULES, building_id=one["id"], number="101", area_m2=24, rooms=2)
    u2 = service.create_unit(conn, NOW, ACTOR, RULES, building_id=two["id"], number="201", area_m2=40, rooms=3)
    assign_gateway(conn, NOW, "gw-12", one["id"])
    return {"b1": one["id"], "b2": two["id"], "u1": u1["id"], "u2": u2["id"]}


def test_area_levels_must_nest(conn: sa.Connection, place: dict[str, int]) -> None:
    with pytest.raises(InvalidInput) as info:
        service.create_area(conn, NOW, ACTOR, level="grid", code="G9", name="x", parent_code="440604")
    assert info.value.field == "parent_code" and "community" in info.value.problem
    with pytest.raises(InvalidInput, match="parent_code"):
        service.create_area(conn, NOW, ACTOR, level="street", code="S9", name="x", parent_code="nowhere")
    with pytest.raises(Conflict):
        service.create_area(conn, NOW, ACTOR, level="district", code="440604", name="again", parent_code=None)


def test_unknown_grid_is_named(conn: sa.Connection, place: dict[str, int]) -> None:
    with pytest.raises(InvalidInput) as info:
        service.create_building(conn, NOW, ACTOR, name="x", grid_code="440604001")
    assert info.value.field == "grid_code" and "street" in info.value.problem


def test_capacity_is_the_smaller_of_area_and_rooms(conn: sa.Connection, place: dict[str, int]) -> None:
    small = service.create_unit(conn, NOW, ACTOR, RULES, building_id=place["b1"], number="102", area_m2=14, rooms=3)
    assert small["capacity"] == 2  # 14 m² / 5 m² per person
    roomy = service.create_unit(conn, NOW, ACTOR, RULES, building_id=place["b1"], number="103", area_m2=90, rooms=2)
    assert roomy["capacity"] == 4  # 2 rooms × 2 per room
    changed = service.update_unit(conn, NOW, ACTOR, RULES, roomy["id"], rooms=5)
    assert changed["capacity"] == 10


def test_building_updates_are_traced(conn: sa.Connection, place: dict[str, int]) -> None:
    signed = NOW - timedelta(days=3)
    service.update_building(conn, NOW, "user:7", place["b2"], is_rental=True, pledge_signed_at=signed)
    trace = conn.execute(sa.select(history.c.actor, history.c.action, history.c.changes)
                         .where(history.c.entity == "building", history.c.entity_id == place["b2"])
                         .order_by(history.c.id)).all()
    assert [t.action for t in trace] == ["created", "updated"]
    assert trace[-1].actor == "user:7"
    assert trace[-1].changes["is_rental"] == [False, True]


def test_a_person_is_stored_protected_and_found_again(conn: sa.Connection, place: dict[str, int]) -> None:
    first = service.upsert_person(conn, NOW, ACTOR, VAULT, PersonFields(ALICE, "李娜", "13800138000", "湖南衡阳"))
    assert first.created and first.masked == ALICE[:4] + "*" * 10 + ALICE[-4:]
    again = service.upsert_person(conn, NOW, ACTOR, VAULT, PersonFields(ALICE.lower(), "李娜", "13900139000"))
    assert again.id == first.id and not again.created
    row = conn.execute(sa.select(persons).where(persons.c.id == first.id)).mappings().one()
    stored = " ".join(str(v) for v in row.values())
    assert ALICE not in stored
    assert VAULT.decrypt(row["id_cipher"]) == ALICE
    assert row["phone"] == "13900139000" and row["origin"] == "湖南衡阳"
    traced = conn.execute(sa.select(history.c.changes).where(history.c.entity == "person")).scalars().all()
    assert ALICE not in str(traced) and ["13800138000", "13900139000"] in [t.get("phone") for t in traced]


def test_a_bad_id_number_names_the_field(conn: sa.Connection, place: dict[str, int]) -> None:
    wrong = ALICE[:-1] + ("0" if ALICE[-1] != "0" else "1")
    with pytest.raises(InvalidInput) as info:
        service.register(conn, NOW, ACTOR, VAULT, unit_id=place["u1"], person=PersonFields(wrong, "李娜"),
                         arrived_at=NOW, source="landlord")
    assert info.value.field == "person.id_number"
    assert info.value.problem == "wrong check character"
    assert conn.execute(sa.select(sa.func.count()).select_from(registrations)).scalar_one() == 0


def test_register_with_a_card_then_deregister_revokes_it(conn: sa.Connection, place: dict[str, int]) -> None:
    done = service.register(conn, NOW, ACTOR, VAULT, unit_id=place["u1"], person=PersonFields(ALICE, "李娜"),
                            arrived_at=NOW - timedelta(days=1), source="landlord", credential=("em4100", "0a1b2c3d4e"))
    assert [c.gateway_id for c in done.changes] == ["gw-12"]
    assert done.changes[0].upserts[0]["credential"] == {"format": "em4100", "value": "0A1B2C3D4E"}
    ended = service.deregister(conn, NOW, ACTOR, done.body["id"], departed_at=NOW - timedelta(hours=2))
    assert ended.body["revoked_credentials"] == 1
    assert ended.changes[0].removals == [{"format": "em4100", "value": "0A1B2C3D4E"}]
    reg = conn.execute(sa.select(registrations).where(registrations.c.id == done.body["id"])).mappings().one()
    assert reg["status"] == "ended" and reg["end_reason"] == "deregistered"
    assert reg["ended_at"] == NOW - timedelta(hours=2)
    with pytest.raises(Conflict):
        service.deregister(conn, NOW, ACTOR, done.body["id"])


def test_departure_before_arrival_and_future_dates_are_refused(conn: sa.Connection, place: dict[str, int]) -> None:
    with pytest.raises(InvalidInput) as info:
        service.register(conn, NOW, ACTOR, VAULT, unit_id=place["u1"], person=PersonFields(ALICE, "李娜"),
                         arrived_at=NOW + timedelta(days=30), source="landlord")
    assert info.value.field == "arrived_at"
    done = service.register(conn, NOW, ACTOR, VAULT, unit_id=place["u1"], person=PersonFields(ALICE, "李娜"),
                            arrived_at=NOW - timedelta(days=5), source="landlord")
    with pytest.raises(InvalidInput) as info:
        service.deregister(conn, NOW, ACTOR, done.body["id"], departed_at=NOW - timedelta(days=6))
    assert info.value.field == "departed_at"


def test_one_person_cannot_live_in_two_places(conn: sa.Connection, place: dict[str, int]) -> None:
    first = service.register(conn, NOW, ACTOR, VAULT, unit_id=place["u1"], person=PersonFields(ALICE, "李娜"),
                             arrived_at=NOW - timedelta(days=40), source="landlord", credential=("em4100", "0A1B2C3D4E"))
    with pytest.raises(Conflict, match="end it first"):
        service.register(conn, NOW, ACTOR, VAULT, unit_id=place["u2"], person=PersonFields(ALICE, "李娜"),
                         arrived_at=NOW - timedelta(days=2), source="landlord")
    moved = service.register(conn, NOW, ACTOR, VAULT, unit_id=place["u2"], person=first.body["person_id"],
                             arrived_at=NOW - timedelta(days=2), source="landlord", end_previous=True)
    old = conn.execute(sa.select(registrations).where(registrations.c.id == first.body["id"])).mappings().one()
    assert old["status"] == "ended" and old["end_reason"] == "moved"
    assert old["ended_at"] == NOW - timedelta(days=2)
    # The card of the old home stops working with the move.
    assert [c.gateway_id for c in moved.changes] == ["gw-12"] and moved.changes[0].removals
    # An import of an older stay that overlaps the recorded one is refused.
    service.deregister(conn, NOW, ACTOR, moved.body["id"], departed_at=NOW - timedelta(days=1))
    with pytest.raises(Conflict, match="overlaps"):
        service.register(conn, NOW, ACTOR, VAULT, unit_id=place["u1"], person=first.body["person_id"],
                         arrived_at=NOW - timedelta(days=10), source="import")


def test_a_self_declaration_waits_for_confirmation(conn: sa.Connection, place: dict[str, int]) -> None:
    pending = service.declare(conn, NOW, "tenant", VAULT, unit_id=place["u1"], person=PersonFields(BOB, "王强"),
                              arrived_at=NOW - timedelta(days=1))
    assert pending.body["status"] == "pending" and pending.body["source"] == "tenant"
    with pytest.raises(Conflict):
        service.declare(conn, NOW, "tenant", VAULT, unit_id=place["u1"], person=PersonFields(BOB, "王强"),
                        arrived_at=NOW - timedelta(days=1))
    with pytest.raises(Conflict, match="reject"):
        service.deregister(conn, NOW, ACTOR, pending.body["id"])
    service.confirm_registration(conn, NOW, ACTOR, pending.body["id"], user_id=None)
    status = conn.execute(sa.select(registrations.c.status).where(registrations.c.id == pending.body["id"]))
    assert status.scalar_one() == "active"
    # Whoever knows a number cannot rewrite that person's record by declaring.
    service.declare(conn, NOW, "tenant", VAULT, unit_id=place["u2"], person=PersonFields(BOB, "冒名", "13000000000"),
                    arrived_at=NOW)
    name = conn.execute(sa.select(persons.c.display_name).where(persons.c.id == pending.body["person_id"]))
    assert name.scalar_one() == "王强"
    other = service.declare(conn, NOW, "tenant", VAULT, unit_id=place["u2"],
                            person=PersonFields(ALICE, "李娜"), arrived_at=NOW)
    service.reject_registration(conn, NOW, ACTOR, other.body["id"], reason="not_a_tenant")
    with pytest.raises(Conflict):
        service.confirm_registration(conn, NOW, ACTOR, other.body["id"])


def test_a_card_handed_to_the_unit_is_linked_when_its_holder_registers(conn: sa.Connection,
                                                                       place: dict[str, int]) -> None:
    handed = service.issue_unit_credential(conn, NOW, ACTOR, unit_id=place["u1"], fmt="em4100", value="00000000AA")
    assert handed.changes[0].upserts[0]["person"] == f"c-{handed.body['id']}"
    done = service.register(conn, NOW, ACTOR, VAULT, unit_id=place["u1"], person=PersonFields(ALICE, "李娜"),
                            arrived_at=NOW, source="landlord", credential=("em4100", "00000000AA"))
    assert done.body["credential_id"] == handed.body["id"]
    row = conn.execute(sa.select(credentials).where(credentials.c.id == handed.body["id"])).mappings().one()
    assert row["person_id"] == done.body["person_id"] and row["registration_id"] == done.body["id"]
    assert done.changes[-1].upserts[0]["person"] == f"p-{done.body['person_id']}"
    # Another unit's registration cannot take it over.
    neighbour = service.create_unit(conn, NOW, ACTOR, RULES, building_id=place["b1"], number="102", area_m2=20, rooms=1)
    with pytest.raises(Conflict, match="already active"):
        service.register(conn, NOW, ACTOR, VAULT, unit_id=neighbour["id"], person=PersonFields(BOB, "王强"),
                         arrived_at=NOW, source="landlord", credential=("em4100", "00000000AA"))


def test_card_numbers_are_checked(conn: sa.Connection, place: dict[str, int]) -> None:
    with pytest.raises(InvalidInput) as info:
        service.issue_unit_credential(conn, NOW, ACTOR, unit_id=place["u1"], fmt="em4100", value="12345")
    assert info.value.field == "credential.value"
    with pytest.raises(InvalidInput) as info:
        service.issue_unit_credential(conn, NOW, ACTOR, unit_id=place["u1"], fmt="magstripe", value="12345")
    assert info.value.field == "credential.format"


def test_who_may_name_a_person_by_id(conn: sa.Connection, place: dict[str, int]) -> None:
    """Everyone for the system (the district simulator registers people it
    created before their first registration); a landlord only a person
    registered, at some point accepted, in their buildings."""
    ref = service.upsert_person(conn, NOW, ACTOR, VAULT, PersonFields(ALICE, "李娜"))
    stranger = service.Scope("landlord", 999_999)
    with pytest.raises(InvalidInput) as info:
        service.register(conn, NOW, ACTOR, VAULT, unit_id=place["u1"], person=ref.id, arrived_at=NOW,
                         source="landlord", scope=stranger)
    assert (info.value.field, info.value.problem) == ("person_id", "no such person")
    done = service.register(conn, NOW, ACTOR, VAULT, unit_id=place["u1"], person=ref.id, arrived_at=NOW,
                            source="landlord")
    assert done.body["status"] == "active"
    assert service.EVERYWHERE.knows_person(conn, ref.id) and not stranger.knows_person(conn, ref.id)
