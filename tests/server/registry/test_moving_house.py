"""Moving house without takeover (docs/registry.md, "Moving house"), through
the real HTTP interface: the API and the landlord and coordinator pages.

Two buildings in two grids. Landlord A's tenant lives at A; landlord B holds
the tenant's identity card and registers them at B. B learns nothing of A
(no unit, building, registration, date or name in any answer or error),
cannot end A's registration and cannot rename the person; the registration
waits, pending, for the grid coordinator of B's building, whose
confirmation ends A's registration (reason "moved", A's card revoked) and
tells landlord A that the tenant moved, not where to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from server.db.models import persons, registrations
from server.registry.idnumber import make_id_number
from server.registry.service import MOVES_AWAITING_PER_LANDLORD
from tests.server.auth_helpers import UserCreds, bearer, make_user
from tests.server.registry.api_helpers import ID_A, ID_B, Api, issue_plates, person

A_NAME, A_PHONE, A_ORIGIN = "Li Wei", "13912345678", "湖南省邵阳市"
A_CARD, B_CARD = "14008EC793", "0A1B2C3D4E"
A_BUILDING_NAME, A_UNIT_NUMBER = "Tangxia 12", "301"


@dataclass(frozen=True)
class Town:
    admin: UserCreds
    landlord_a: UserCreds
    landlord_b: UserCreds
    coordinator_a: UserCreds  # grid G-A, A's building
    coordinator_b: UserCreds  # grid G-B, B's building
    building_a: int
    unit_a: int
    unit_a2: int
    building_b: int
    unit_b: int
    unit_b2: int
    plates: dict[int, str]


@pytest.fixture
async def town(api: Api, engine: sa.Engine) -> Town:
    admin = make_user(engine, "admin")
    landlord_a, landlord_b = make_user(engine, "landlord"), make_user(engine, "landlord")
    coordinator_a, coordinator_b = make_user(engine, "coordinator"), make_user(engine, "coordinator")
    tok = admin.token
    grids = {}
    for level, code, parent in (("district", "440106", None), ("street", "440106-01", "440106"),
                                ("community", "440106-01-03", "440106-01"), ("grid", "G-A", "440106-01-03"),
                                ("grid", "G-B", "440106-01-03")):
        area = await api.call("POST", "/api/v1/areas", {"level": level, "code": code, "name": f"{level} {code}",
                                                        "parent_code": parent}, 201, token=tok)
        grids[code] = area["id"]
    for grid, coordinator in (("G-A", coordinator_a), ("G-B", coordinator_b)):
        await api.call("POST", f"/api/v1/grids/{grids[grid]}/coordinators", {"username": coordinator.username}, 201,
                       token=tok)
    ids: dict[str, int] = {}
    for key, name, code, grid, landlord in (("a", A_BUILDING_NAME, "B-12", "G-A", landlord_a),
                                            ("b", "Shipai 7", "B-7", "G-B", landlord_b)):
        building = await api.call("POST", "/api/v1/registry/buildings", {
            "name": name, "code": code, "address": f"{name} Rd", "grid_code": grid,
            "landlord_username": landlord.username, "is_rental": True}, 201, token=tok)
        ids[key] = building["id"]
        for n, number in enumerate((A_UNIT_NUMBER, "302") if key == "a" else ("7701", "7702")):
            unit = await api.call("POST", f"/api/v1/registry/buildings/{building['id']}/units",
                                  {"number": number, "area_m2": 30, "rooms": 2}, 201, token=tok)
            ids[f"{key}{n}"] = unit["id"]
        await api.call("PUT", f"/api/v1/gateways/gw-{key}/building", {"building_id": building["id"]}, token=tok)
    return Town(admin, landlord_a, landlord_b, coordinator_a, coordinator_b, ids["a"], ids["a0"], ids["a1"], ids["b"],
                ids["b0"], ids["b1"], plates=issue_plates(api, engine, [ids["b0"]]))


def days_ago(n: int) -> str:
    return (datetime.now(UTC) - timedelta(days=n)).date().isoformat()


async def tenant_at_a(api: Api, town: Town) -> dict[str, Any]:
    """Landlord A's tenant, with a card at A's door, since 60 days."""
    reg = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_a, "person": person(ID_A, A_NAME, phone=A_PHONE, origin=A_ORIGIN),
        "arrived_at": days_ago(60), "credential": {"format": "em4100", "value": A_CARD}}, 201,
        token=town.landlord_a.token)
    assert reg["status"] == "active"
    return dict(reg)


def reveals_a(text: str, reg_a: dict[str, Any], town: Town) -> list[str]:
    """What of A's side a text shows: names, phone, origin, A's building and
    unit, A's card, A's arrival date, A's registration and unit ids."""
    arrived = datetime.fromisoformat(reg_a["arrived_at"])
    dates = (arrived.date().isoformat(), arrived.astimezone(UTC).isoformat()[:16])
    found = [s for s in (A_NAME, A_PHONE, A_ORIGIN, A_BUILDING_NAME, A_CARD, ID_A, *dates) if s in text]
    doc = json.loads(text) if text.startswith("{") else {}
    values = json.dumps(doc)
    for label, ident in (("registration", reg_a["id"]), ("unit", town.unit_a), ("building", town.building_a)):
        if f"{label} {ident}" in values:
            found.append(f"{label} {ident}")
    if isinstance(doc, dict) and (doc.get("unit_id") == town.unit_a or doc.get("building_id") == town.building_a):
        found.append("A's unit or building id")
    return found


async def allowlist(api: Api, town: Town, gateway: str) -> tuple[list[str], list[str]]:
    doc = await api.call("GET", f"/api/v1/gateways/{gateway}/allowlist", token=town.admin.token)
    return ([e["credential"]["value"] for e in doc["entries"]], [r["value"] for r in doc["revoked"]])


def stored_person(engine: sa.Engine, person_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(persons.c.display_name, persons.c.phone, persons.c.origin)
                           .where(persons.c.id == person_id)).mappings().one()
    return dict(row)


def status_of(engine: sa.Engine, reg_id: int) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(registrations.c.status, registrations.c.end_reason)
                           .where(registrations.c.id == reg_id)).one()
    return str(row.status), row.end_reason


# --------------------------------------------------------------------------- finding 1: takeover by person id


async def test_a_landlord_cannot_register_another_landlords_tenant_by_person_id(api: Api, town: Town,
                                                                                engine: sa.Engine) -> None:
    reg_a = await tenant_at_a(api, town)
    tok = town.landlord_b.token
    # B may not read the person, and a refusal is the answer for nobody.
    await api.call("GET", f"/api/v1/registry/persons/{reg_a['person_id']}", None, 404, token=tok)
    nobody = await api.call("GET", "/api/v1/registry/persons/999999", None, 404, token=tok)
    assert nobody == (await api.call("GET", f"/api/v1/registry/persons/{reg_a['person_id']}", None, 404, token=tok))

    answers = []
    for person_id in (reg_a["person_id"], 999999):
        for end_previous in (False, True):
            answers.append(await api.call("POST", "/api/v1/registry/registrations", {
                "unit_id": town.unit_b, "person_id": person_id, "arrived_at": days_ago(1),
                "end_previous": end_previous}, 400, token=tok))
    # Exactly what a nonexistent id gets: the field, "no such person", no id.
    assert all(a == answers[0] for a in answers), answers
    assert answers[0]["field"] == "person_id" and answers[0]["detail"] == "no such person"
    assert str(reg_a["person_id"]) not in json.dumps(answers[0])

    # Nothing happened at A: still registered, the card still opens A's door.
    assert status_of(engine, reg_a["id"]) == ("active", None)
    assert A_CARD in (await allowlist(api, town, "gw-a"))[0]
    with engine.connect() as conn:
        at_b = conn.execute(sa.select(sa.func.count()).select_from(registrations)
                            .where(registrations.c.building_id == town.building_b)).scalar_one()
    assert at_b == 0


async def test_a_pending_claim_does_not_let_a_landlord_read_or_name_the_person(api: Api, town: Town) -> None:
    """A pending registration (B's move, a declaration at B's door) does not
    tie the person to B: B still may not read them or name them by id."""
    reg_a = await tenant_at_a(api, town)
    tok = town.landlord_b.token
    pending = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_b, "person": person(ID_A, "Li Wei"), "arrived_at": days_ago(1)}, 201, token=tok)
    assert pending["status"] == "pending"
    await api.call("GET", f"/api/v1/registry/persons/{reg_a['person_id']}", None, 404, token=tok)
    refused = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_b2, "person_id": reg_a["person_id"], "arrived_at": days_ago(1)}, 400, token=tok)
    assert refused["detail"] == "no such person"


async def test_landlord_moves_a_tenant_between_their_own_units_in_one_step(api: Api, town: Town,
                                                                            engine: sa.Engine) -> None:
    reg_a = await tenant_at_a(api, town)
    moved = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_a2, "person_id": reg_a["person_id"], "arrived_at": days_ago(2), "end_previous": True},
        201, token=town.landlord_a.token)
    assert moved["status"] == "active" and moved["awaiting"] is None
    assert status_of(engine, reg_a["id"]) == ("ended", "moved")
    # Without end_previous, inside their own buildings the landlord is told where.
    again = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_a, "person_id": reg_a["person_id"], "arrived_at": days_ago(0)}, 409,
        token=town.landlord_a.token)
    assert f"registration {moved['id']}" in again["detail"]
    # The same unit again: a conflict, saying nothing of any other building.
    same = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_a2, "person_id": reg_a["person_id"], "arrived_at": days_ago(0)}, 409,
        token=town.landlord_a.token)
    assert same["detail"].startswith("this person is already registered at this unit")


# --------------------------------------------------------------------------- finding 2: oracle and takeover by number


async def test_a_number_active_elsewhere_gives_a_pending_registration_that_reveals_nothing(
        api: Api, town: Town, engine: sa.Engine) -> None:
    reg_a = await tenant_at_a(api, town)
    tok = town.landlord_b.token
    fresh = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_b2, "person": person(ID_B, "Wang Fang"), "arrived_at": days_ago(1)}, 201, token=tok)
    api.seen.clear()
    # B holds the tenant's identity card, types another name and phone, asks
    # to end the previous registration and hands out a card.
    claim = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_b, "person": person(ID_A, "Someone Else", phone="13000000000", origin="广东梅州"),
        "arrived_at": days_ago(3), "end_previous": True, "credential": {"format": "em4100", "value": B_CARD}},
        201, token=tok)
    # The shape of every registration answer; nothing but "pending, awaiting verification".
    assert set(claim) == set(fresh)
    assert claim["status"] == "pending" and claim["awaiting"] == "verification"
    assert claim["credential_id"] is None and claim["allowlist_versions"] == {}
    assert (claim["unit_id"], claim["building_id"]) == (town.unit_b, town.building_b)

    # B's errors say nothing of A either: the same claim again, an arrival
    # before A's, the same number at B's other unit.
    again = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_b, "person": person(ID_A, "Someone Else"), "arrived_at": days_ago(3)}, 409, token=tok)
    early = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_b2, "person": person(ID_A, "Someone Else"), "arrived_at": days_ago(90),
        "end_previous": True}, 201, token=tok)
    assert early["status"] == "pending"
    await api.call("POST", f"/api/v1/registry/registrations/{early['id']}/reject", {"reason": "mistake"}, token=tok)
    assert "already" in again["detail"]

    # What B reads afterwards: its unit, its registrations, their history.
    await api.call("GET", f"/api/v1/registry/units/{town.unit_b}", token=tok)
    listed = await api.call("GET", "/api/v1/registry/registrations", token=tok, unit_id=town.unit_b)
    assert [r["name"] for r in listed["registrations"]] == ["Someone Else"]  # as B typed it
    await api.call("GET", "/api/v1/registry/history", token=tok, entity="registration", entity_id=claim["id"])
    await api.call("GET", f"/api/v1/registry/persons/{claim['person_id']}", None, 404, token=tok)
    for text in api.seen:
        assert reveals_a(text, reg_a, town) == [], text

    # Nothing changed at A, and B's card opens nothing yet.
    assert status_of(engine, reg_a["id"]) == ("active", None)
    assert stored_person(engine, reg_a["person_id"]) == {"display_name": A_NAME, "phone": A_PHONE,
                                                         "origin": A_ORIGIN}
    assert A_CARD in (await allowlist(api, town, "gw-a"))[0]
    assert B_CARD not in (await allowlist(api, town, "gw-b"))[0]
    # Landlord A sees nothing of B's claim.
    a_view = await api.call("GET", "/api/v1/registry/registrations", token=town.landlord_a.token,
                            person_id=reg_a["person_id"])
    assert [r["id"] for r in a_view["registrations"]] == [reg_a["id"]]


async def test_a_stay_elsewhere_that_ended_after_the_arrival_is_no_oracle_for_its_dates(
        api: Api, town: Town, engine: sa.Engine) -> None:
    reg_a = await tenant_at_a(api, town)
    await api.call("POST", f"/api/v1/registry/registrations/{reg_a['id']}/end", {"departed_at": days_ago(5)},
                   token=town.landlord_a.token)
    # Before A's recorded departure: pending (not "overlaps ... until <date>").
    before = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_b, "person": person(ID_A, "Li Wei"), "arrived_at": days_ago(10)}, 201,
        token=town.landlord_b.token)
    assert before["status"] == "pending"
    # After it: nobody's tenant any more, registered at once.
    after = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_b2, "person": person(ID_A, "Li Wei"), "arrived_at": days_ago(4)}, 201,
        token=town.landlord_b.token)
    assert after["status"] == "active"


async def test_the_moves_a_landlord_may_leave_waiting_are_limited(api: Api, town: Town, engine: sa.Engine) -> None:
    for n in range(MOVES_AWAITING_PER_LANDLORD):
        number = make_id_number("440106", datetime(1980, 1, 1).date() + timedelta(days=n), 101)
        await api.call("POST", "/api/v1/registry/registrations", {
            "unit_id": town.unit_a, "person": person(number, f"T{n}"), "arrived_at": days_ago(30)}, 201,
            token=town.landlord_a.token)
        claim = await api.call("POST", "/api/v1/registry/registrations", {
            "unit_id": town.unit_b, "person": person(number, f"T{n}"), "arrived_at": days_ago(1)}, 201,
            token=town.landlord_b.token)
        assert claim["status"] == "pending"
    refused = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_b2, "person": person(ID_A, "Li Wei"), "arrived_at": days_ago(1)}, 201,
        token=town.landlord_b.token)
    assert refused["status"] == "active"  # a number registered nowhere is not limited
    number = make_id_number("440106", datetime(1979, 1, 1).date(), 101)
    await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_a, "person": person(number, "T"), "arrived_at": days_ago(30)}, 201,
        token=town.landlord_a.token)
    full = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_b2, "person": person(number, "T"), "arrived_at": days_ago(1)}, 409,
        token=town.landlord_b.token)
    assert "await" in full["detail"]


# --------------------------------------------------------------------------- the whole move


async def test_the_full_move_verified_by_the_coordinator_of_the_new_grid(api: Api, town: Town,
                                                                          engine: sa.Engine) -> None:
    reg_a = await tenant_at_a(api, town)
    claim = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": town.unit_b, "person": person(ID_A, "Li Wei"), "arrived_at": days_ago(2), "end_previous": True,
        "credential": {"format": "em4100", "value": B_CARD}, "doors": ["front"]}, 201, token=town.landlord_b.token)
    assert claim["status"] == "pending"

    # Landlord B cannot confirm it, end_previous or not; the coordinator of
    # A's grid does not reach B's building.
    for body in (None, {"end_previous": True}):
        refused = await api.call("POST", f"/api/v1/registry/registrations/{claim['id']}/confirm", body, 403,
                                 token=town.landlord_b.token)
        assert reveals_a(json.dumps(refused), reg_a, town) == []
    await api.call("POST", f"/api/v1/registry/registrations/{claim['id']}/confirm", None, 404,
                   token=town.coordinator_a.token)
    assert status_of(engine, claim["id"]) == ("pending", None)
    assert status_of(engine, reg_a["id"]) == ("active", None)

    # The coordinator of B's grid verifies at the door and confirms.
    confirmed = await api.call("POST", f"/api/v1/registry/registrations/{claim['id']}/confirm", None, 200,
                               token=town.coordinator_b.token)
    assert confirmed["status"] == "active" and confirmed["credential_id"] is not None
    assert set(confirmed["allowlist_versions"]) == {"gw-a", "gw-b"}
    assert status_of(engine, claim["id"]) == ("active", None)
    assert status_of(engine, reg_a["id"]) == ("ended", "moved")
    # A's card is revoked at A's door; B's held card now opens B's.
    a_entries, a_revoked = await allowlist(api, town, "gw-a")
    assert A_CARD not in a_entries and A_CARD in a_revoked
    assert B_CARD in (await allowlist(api, town, "gw-b"))[0]
    # The move ended at the arrival at B; the person's record is still A's.
    rows = await api.call("GET", "/api/v1/registry/registrations", token=town.admin.token,
                          person_id=reg_a["person_id"])
    by_id = {r["id"]: r for r in rows["registrations"]}
    assert by_id[reg_a["id"]]["departed_at"] == by_id[claim["id"]]["arrived_at"]
    assert stored_person(engine, reg_a["person_id"])["display_name"] == A_NAME

    # Landlord A's trace of the ended registration names no one from B.
    trail = await api.call("GET", "/api/v1/registry/history", token=town.landlord_a.token,
                           entity="registration", entity_id=reg_a["id"])
    ended = trail["history"][0]
    assert ended["action"] == "ended" and ended["actor"] == "system:move"
    assert ended["changes"]["reason"] == "moved" and ended["changes"]["registered_elsewhere"] is True
    assert set(ended["changes"]) == {"status", "departed_at", "reason", "revoked_credentials",
                                     "registered_elsewhere"}
    # Staff read where to and who verified it on the person's trace.
    person_trail = await api.call("GET", "/api/v1/registry/history", token=town.admin.token,
                                  entity="person", entity_id=reg_a["person_id"])
    moved = next(h for h in person_trail["history"] if h["action"] == "moved")
    assert moved["actor"] == f"user:{town.coordinator_b.id}"
    assert moved["changes"]["from_registration"] == reg_a["id"] and moved["changes"]["to_registration"] == claim["id"]

    # Landlord A's pages say the tenant moved, in Chinese and in English, not where.
    for lang, words in (("zh", ("最近搬离", "已在新住址登记")), ("en", ("Recently moved out", "registered at a new address"))):
        for path in (f"/landlord/buildings/{town.building_a}", f"/landlord/units/{town.unit_a}"):
            response = await api.client.get(path, params={"lang": lang}, headers=bearer(town.landlord_a.token))
            html = await response.text()
            assert response.status == 200
            assert all(w in html for w in words) and A_NAME in html, html
            assert "Shipai" not in html and "7701" not in html
    # B's page shows the tenant as an occupant now, nothing of A.
    html = await (await api.client.get(f"/landlord/units/{town.unit_b}",
                                       headers=bearer(town.landlord_b.token))).text()
    assert A_BUILDING_NAME not in html and "最近搬离" not in html and "等待网格员核实" not in html


async def test_a_landlords_own_deregistration_is_no_moved_out_notice(api: Api, town: Town) -> None:
    reg_a = await tenant_at_a(api, town)
    await api.call("POST", f"/api/v1/registry/registrations/{reg_a['id']}/end", {"reason": "moved"},
                   token=town.landlord_a.token)
    html = await (await api.client.get(f"/landlord/buildings/{town.building_a}",
                                       headers=bearer(town.landlord_a.token))).text()
    assert "最近搬离" not in html


# --------------------------------------------------------------------------- the pages


async def test_the_move_on_the_landlord_and_coordinator_pages(api: Api, town: Town, engine: sa.Engine) -> None:
    reg_a = await tenant_at_a(api, town)
    b = bearer(town.landlord_b.token)
    response = await api.client.post(f"/landlord/units/{town.unit_b}/register", allow_redirects=False, headers=b,
                                     data={"id_number": ID_A, "name": "李伟", "arrived": days_ago(1), "moved": "1",
                                           "card": B_CARD})
    assert response.status == 303
    assert response.headers["Location"] == f"/landlord/units/{town.unit_b}?ok=registered_pending_ok"
    html = await (await api.client.get(response.headers["Location"], headers=b)).text()
    assert "等待网格员核实后生效" in html and "等待网格员核实" in html and "李伟" in html
    assert reveals_a(html, reg_a, town) == []
    with engine.connect() as conn:
        reg_id = conn.execute(sa.select(registrations.c.id).where(registrations.c.unit_id == town.unit_b)).scalar_one()
    # No confirm button for landlord B, and confirming anyway is refused, in words.
    assert f'action="/landlord/registrations/{reg_id}/confirm"' not in html
    refused = await api.client.post(f"/landlord/registrations/{reg_id}/confirm", headers=b)
    text = await refused.text()
    assert refused.status == 403 and "网格员核实后确认" in text and reveals_a(text, reg_a, town) == []
    english = await (await api.client.get(f"/landlord/units/{town.unit_b}", params={"lang": "en"},
                                          headers=b)).text()
    assert "Awaiting the grid coordinator" in english
    assert status_of(engine, reg_a["id"]) == ("active", None)

    # The coordinator of B's grid sees the move (and the name B typed beside
    # the recorded one) on the unit page, and confirms it there.
    c = bearer(town.coordinator_b.token)
    page = await (await api.client.get(f"/c/units/{town.unit_b}", params={"lang": "zh"}, headers=c)).text()
    assert "搬迁登记" in page and "李伟" in page and A_NAME in page
    response = await api.client.post(f"/c/units/{town.unit_b}/registrations/{reg_id}/confirm", headers=c,
                                     allow_redirects=False)
    assert response.status == 303, await response.text()
    assert status_of(engine, reg_id) == ("active", None)
    assert status_of(engine, reg_a["id"]) == ("ended", "moved")
    assert B_CARD in (await allowlist(api, town, "gw-b"))[0]
    assert A_CARD in (await allowlist(api, town, "gw-a"))[1]


async def test_a_self_declaration_of_someone_registered_elsewhere_needs_the_coordinator(
        api: Api, town: Town, engine: sa.Engine) -> None:
    """A declaration at B's door is the same question asked another way:
    landlord B cannot confirm it (nor end A's registration with it)."""
    reg_a = await tenant_at_a(api, town)
    declared = await api.call("POST", "/api/v1/declarations", {
        "plate": town.plates[town.unit_b], "person": person(ID_A, "Li Wei"), "arrived_at": days_ago(1)}, 201)
    for body in (None, {"end_previous": True}):
        refused = await api.call("POST", f"/api/v1/registry/registrations/{declared['id']}/confirm", body, 403,
                                 token=town.landlord_b.token)
        assert reveals_a(json.dumps(refused), reg_a, town) == []
    html = await (await api.client.get(f"/landlord/buildings/{town.building_b}",
                                       headers=bearer(town.landlord_b.token))).text()
    assert "等待网格员核实" in html and f'/landlord/registrations/{declared["id"]}/confirm' not in html
    assert status_of(engine, reg_a["id"]) == ("active", None)
    confirmed = await api.call("POST", f"/api/v1/registry/registrations/{declared['id']}/confirm",
                               {"end_previous": True}, token=town.coordinator_b.token)
    assert confirmed["status"] == "active"
    assert status_of(engine, reg_a["id"]) == ("ended", "moved")
