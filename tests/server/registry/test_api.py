"""The registry API's flows as a landlord, a tenant and a coordinator meet
them, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from server.db.models import registrations, scan_rejections
from server.plates import service as plate_service
from tests.server.registry.api_helpers import ID_A, ID_B, Api, City, person


def days_ago(n: int) -> str:
    return (datetime.now(UTC) - timedelta(days=n)).isoformat()


async def test_landlord_registers_with_a_card_and_deregistering_revokes_it(api: Api, city: City) -> None:
    tok = city.landlord.token
    reg = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": city.unit, "person": person(phone="13912345678", origin="Hunan"), "arrived_at": days_ago(2),
        "credential": {"format": "em4100", "value": "14008ec793"}, "doors": ["door-1"]}, 201, token=tok)
    assert reg["status"] == "active" and reg["source"] == "landlord" and reg["credential_id"] is not None
    assert reg["allowlist_versions"] == {"gw-a": 2}

    allow = await api.call("GET", "/api/v1/gateways/gw-a/allowlist", token=city.admin.token)
    [entry] = allow["entries"]
    assert entry["credential"] == {"format": "em4100", "value": "14008EC793"}
    assert entry["person"] == f"p-{reg['person_id']}" and entry["doors"] == ["door-1"]

    unit = await api.call("GET", f"/api/v1/registry/units/{city.unit}", token=tok)
    assert unit["occupant_count"] == 1 and unit["capacity"] == 4
    assert unit["occupants"][0]["id_masked"] == ID_A[:4] + "*" * 10 + ID_A[-4:]
    building = await api.call("GET", f"/api/v1/registry/buildings/{city.building}", token=tok)
    assert [(u["number"], u["occupants"], u["capacity"]) for u in building["units"]] == [("301", 1, 4),
                                                                                       ("302", 0, 4)]
    regs = await api.call("GET", "/api/v1/registry/registrations", token=tok, unit_id=city.unit)
    assert [c["value"] for c in regs["registrations"][0]["credentials"]] == ["14008EC793"]

    ended = await api.call("POST", f"/api/v1/registry/registrations/{reg['id']}/end",
                           {"departed_at": days_ago(1), "reason": "moved_out"}, token=tok)
    assert ended["status"] == "ended" and ended["revoked_credentials"] == 1
    allow = await api.call("GET", "/api/v1/gateways/gw-a/allowlist", token=city.admin.token)
    assert allow["entries"] == [] and allow["revoked"] == [{"format": "em4100", "value": "14008EC793"}]
    await api.call("POST", f"/api/v1/registry/registrations/{reg['id']}/end", {}, 409, token=tok)

    # Every change left its trace, with who did it.
    trail = await api.call("GET", "/api/v1/registry/history", token=city.admin.token,
                           entity="registration", entity_id=reg["id"])
    assert [h["action"] for h in trail["history"]] == ["ended", "registered"]
    assert {h["actor"] for h in trail["history"]} == {f"user:{city.landlord.id}"}
    cred = await api.call("GET", "/api/v1/registry/history", token=tok,
                          entity="credential", entity_id=reg["credential_id"])
    # The card's own trace says it stopped when the registration ended.
    assert [h["action"] for h in cred["history"]] == ["revoked", "issued"]
    people = await api.call("GET", "/api/v1/registry/history", token=city.admin.token,
                            entity="person", entity_id=reg["person_id"])
    assert [h["action"] for h in people["history"]] == ["created"]
    assert ID_A not in "".join(api.seen)


async def test_self_declaration_waits_for_confirmation_or_rejection(api: Api, city: City) -> None:
    declared = await api.call("POST", "/api/v1/declarations", {
        "plate": city.plates[city.unit], "person": person(), "arrived_at": days_ago(0)[:10]}, 201)
    assert declared["status"] == "pending" and "person_id" not in declared and declared["unit_id"] == city.unit
    unit = await api.call("GET", f"/api/v1/registry/units/{city.unit}", token=city.landlord.token)
    assert [(o["status"], o["source"]) for o in unit["occupants"]] == [("pending", "tenant")]
    assert unit["occupant_count"] == 0

    confirmed = await api.call("POST", f"/api/v1/registry/registrations/{declared['id']}/confirm",
                               token=city.landlord.token)
    assert confirmed["status"] == "active"
    [row] = (await api.call("GET", "/api/v1/registry/registrations", token=city.coordinator.token,
                            person_id=(await api.call("GET", f"/api/v1/registry/units/{city.unit}",
                                                      token=city.admin.token))["occupants"][0]["person_id"]
                            ))["registrations"]
    assert row["status"] == "active" and row["confirmed_by"] == city.landlord.id

    second = await api.call("POST", "/api/v1/declarations", {
        "plate": city.plates[city.unit2], "person": person(ID_B, "Wang Fang"), "arrived_at": days_ago(1)}, 201)
    rejected = await api.call("POST", f"/api/v1/registry/registrations/{second['id']}/reject",
                              {"reason": "not_living_here"}, token=city.coordinator.token)
    assert rejected["status"] == "rejected"
    await api.call("POST", f"/api/v1/registry/registrations/{second['id']}/confirm", None, 409,
                   token=city.coordinator.token)
    trail = await api.call("GET", "/api/v1/registry/history", token=city.admin.token,
                           entity="registration", entity_id=second["id"])
    assert [(h["action"], h["actor"]) for h in trail["history"]] == [
        ("rejected", f"user:{city.coordinator.id}"), ("declared", "tenant:self-declaration")]
    assert ID_A not in "".join(api.seen) and ID_B not in "".join(api.seen)


async def test_overlapping_registration_is_a_conflict_unless_the_previous_one_ends(api: Api, city: City) -> None:
    tok = city.admin.token
    first = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": city.unit, "person": person(), "arrived_at": days_ago(20)}, 201, token=tok)
    moved = {"unit_id": city.other_unit, "person_id": first["person_id"], "arrived_at": days_ago(3)}
    problem = await api.call("POST", "/api/v1/registry/registrations", moved, 409, token=tok)
    assert f"registration {first['id']}" in problem["detail"]

    second = await api.call("POST", "/api/v1/registry/registrations", {**moved, "end_previous": True}, 201,
                            token=tok)
    regs = await api.call("GET", "/api/v1/registry/registrations", token=tok, person_id=first["person_id"])
    by_id = {r["id"]: r for r in regs["registrations"]}
    assert by_id[first["id"]]["status"] == "ended" and by_id[first["id"]]["end_reason"] == "moved"
    assert by_id[first["id"]]["departed_at"] == by_id[second["id"]]["arrived_at"]
    assert by_id[second["id"]]["status"] == "active"


async def test_person_lookup_finds_by_number_and_never_echoes_it(api: Api, city: City) -> None:
    reg = await api.call("POST", "/api/v1/registry/registrations", {
        "unit_id": city.unit, "person": person(), "arrived_at": days_ago(1)}, 201, token=city.coordinator.token)
    found = await api.call("POST", "/api/v1/persons/lookup", {"id_number": ID_A.lower()}, token=city.coordinator.token)
    assert found == {"id": reg["person_id"], "masked": ID_A[:4] + "**********" + ID_A[-4:], "name": "Li Wei"}
    await api.call("POST", "/api/v1/persons/lookup", {"id_number": ID_B}, 404, token=city.admin.token)
    await api.call("POST", "/api/v1/persons/lookup", {"id_number": ID_A}, 403, token=city.landlord.token)
    doc = await api.call("GET", f"/api/v1/registry/persons/{reg['person_id']}", token=city.landlord.token)
    assert doc["id_masked"].startswith("4401*") and doc["sex"] == "M" and doc["birth_year"] == 1990
    # Another landlord's tenant: the answer for an id that names nobody.
    await api.call("GET", f"/api/v1/registry/persons/{reg['person_id']}", None, 404,
                   token=city.other_landlord.token)
    assert ID_A not in "".join(api.seen) and ID_B not in "".join(api.seen)


async def test_unit_credentials_and_unit_changes_are_traced(api: Api, city: City) -> None:
    card = await api.call("POST", f"/api/v1/registry/units/{city.unit}/credentials",
                          {"format": "em4100", "value": "0A1B2C3D4E"}, 201, token=city.landlord.token)
    allow = await api.call("GET", "/api/v1/gateways/gw-a/allowlist", token=city.admin.token)
    assert [e["credential"]["value"] for e in allow["entries"]] == ["0A1B2C3D4E"]
    unit = await api.call("GET", f"/api/v1/registry/units/{city.unit}", token=city.landlord.token)
    assert [(c["id"], c["registration_id"]) for c in unit["credentials"]] == [(card["id"], None)]
    await api.call("POST", f"/api/v1/registry/units/{city.unit}/credentials",
                   {"format": "em4100", "value": "0A1B2C3D4E"}, 409, token=city.landlord.token)
    # Another landlord's card is answered like one that does not exist.
    await api.call("DELETE", f"/api/v1/registry/credentials/{card['id']}", None, 404,
                   token=city.other_landlord.token)
    await api.call("DELETE", f"/api/v1/registry/credentials/{card['id']}", token=city.landlord.token)
    allow = await api.call("GET", "/api/v1/gateways/gw-a/allowlist", token=city.admin.token)
    assert allow["entries"] == []

    patched = await api.call("PATCH", f"/api/v1/registry/units/{city.unit}", {"area_m2": 12.0},
                             token=city.admin.token)
    assert patched["capacity"] == 2
    building = await api.call("PATCH", f"/api/v1/registry/buildings/{city.building}",
                              {"pledge_signed_at": "2025-03-01T10:00:00+08:00", "is_rental": False},
                              token=city.admin.token)
    assert building["is_rental"] is False and building["pledge_signed_at"].startswith("2025-03-01T02:00")
    trail = await api.call("GET", "/api/v1/registry/history", token=city.admin.token,
                           entity="unit", entity_id=city.unit)
    assert trail["history"][0]["action"] == "updated" and trail["history"][0]["changes"]["capacity"] == [4, 2]
    trail = await api.call("GET", "/api/v1/registry/history", token=city.landlord.token,
                           entity="building", entity_id=city.building)
    assert [h["action"] for h in trail["history"]] == ["updated", "created"]
    assert trail["history"][0]["changes"]["is_rental"] == [True, False]


async def test_self_declaration_needs_a_genuine_plate(api: Api, city: City, engine: sa.Engine) -> None:
    """The public API, like the plate's page, declares only at the door whose
    plate was scanned: a unit id alone, a forged token or a withdrawn plate
    are refused, and each refusal is logged."""
    body = {"person": person(), "arrived_at": days_ago(0)[:10]}
    missing = await api.call("POST", "/api/v1/declarations", {**body, "unit_id": city.unit}, 400)
    assert missing["field"] in ("plate", "unit_id")
    token = city.plates[city.unit]
    key_id, sealed = token.split(".")
    altered = key_id + "." + ("A" if sealed[0] != "A" else "B") + sealed[1:]
    forged = await api.call("POST", "/api/v1/declarations", {**body, "plate": altered}, 404)
    assert forged["error"] == "plate_refused" and forged["reason"] in ("bad_signature", "malformed")
    with engine.begin() as conn:
        plate_service.revoke_units(conn, datetime.now(UTC), [city.unit], actor="test", reason="stolen")
    gone = await api.call("POST", "/api/v1/declarations", {**body, "plate": token}, 410)
    assert gone["reason"] == "revoked"
    with engine.connect() as conn:
        reasons = [r for (r,) in conn.execute(sa.select(scan_rejections.c.reason).order_by(scan_rejections.c.id))]
        pending = conn.execute(sa.select(sa.func.count()).select_from(registrations)
                               .where(registrations.c.status == "pending")).scalar_one()
    assert reasons[-2:] == [forged["reason"], "revoked"] and pending == 0
