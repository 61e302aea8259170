"""What the registry API makes of the ways a phone or a script spells input
(issue: an outside security test): full-width identity numbers are the same
person, other scripts' digits are refused, ``…０００6`` meets the sequence
rule, and text fields hold one visible line within their bounds. Through the
real HTTP interface; every refusal is a 400 naming the field, and no
response ever repeats an identity number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.app import make_app
from server.registry.api_input import MAX_DOORS
from server.registry.idnumber import check_character
from tests.server.registry.api_helpers import ID_A, Api, City, MakeClient, person, seed_city, settings_for


@pytest.fixture
async def api(sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path, aiohttp_client: MakeClient) -> Api:
    return Api(await aiohttp_client(make_app(settings_for(sqlite_url, tmp_path), ingest=False)))


@pytest.fixture
async def city(api: Api, sqlite_engine: sa.Engine) -> City:
    return await seed_city(api, sqlite_engine)


def full_width(text: str) -> str:
    """A phone keyboard in full-width mode: ０-９, Ｘ, －."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def arabic_indic(text: str) -> str:
    return "".join(chr(0x0660 + int(c)) if c.isascii() and c.isdigit() else c for c in text)


def registration(city: City, unit: int | None = None, **fields: Any) -> dict[str, Any]:
    return {"unit_id": unit or city.unit, "person": person(), "arrived_at": "2025-01-01", **fields}


# --------------------------------------------------------------------------- identity numbers


async def test_a_full_width_number_is_the_same_person(api: Api, city: City) -> None:
    first = await api.call("POST", "/api/v1/registry/registrations", registration(city), 201, token=city.admin.token)
    # The same tenant moves next door, typed on a phone in full-width mode.
    second = await api.call("POST", "/api/v1/registry/registrations", registration(
        city, city.unit2, person=person(full_width(ID_A)), arrived_at="2025-02-01", end_previous=True), 201,
        token=city.admin.token)
    assert second["person_id"] == first["person_id"]
    found = await api.call("POST", "/api/v1/persons/lookup", {"id_number": full_width(ID_A.lower())},
                           token=city.coordinator.token)
    assert found["id"] == first["person_id"]
    doc = await api.call("GET", f"/api/v1/registry/persons/{first['person_id']}", token=city.admin.token)
    # One person, one active registration: the first one ended.
    assert sorted(r["status"] for r in doc["registrations"]) == ["active", "ended"]
    assert ID_A not in "".join(api.seen) and full_width(ID_A) not in "".join(api.seen)


async def test_arabic_indic_digits_are_refused_everywhere_a_number_is_taken(api: Api, city: City) -> None:
    await api.call("POST", "/api/v1/registry/registrations", registration(city), 201, token=city.admin.token)
    spelt = arabic_indic(ID_A)
    expected = {"error": "bad_parameter", "field": "person.id_number", "detail": "must be 17 digits and a digit or X"}
    refused = await api.call("POST", "/api/v1/registry/registrations", registration(
        city, city.unit2, person=person(spelt), end_previous=True), 400, token=city.admin.token)
    assert refused == expected
    declared = await api.call("POST", "/api/v1/declarations", {
        "plate": city.plates[city.unit2], "person": person(spelt), "arrived_at": "2025-01-01"}, 400)
    assert declared == expected
    looked_up = await api.call("POST", "/api/v1/persons/lookup", {"id_number": spelt}, 400,
                               token=city.coordinator.token)
    assert looked_up["field"] == "id_number" and looked_up["detail"] == expected["detail"]
    assert spelt not in "".join(api.seen)


async def test_full_width_zeros_meet_the_sequence_rule(api: Api, city: City) -> None:
    first17 = "44010619900517000"
    spelt = full_width(first17) + check_character(first17)  # …０００6 once passed
    for path, token, where in (("/api/v1/registry/registrations", city.landlord.token, {"unit_id": city.unit}),
                               ("/api/v1/declarations", None, {"plate": city.plates[city.unit]})):
        problem = await api.call("POST", path, {**where, "person": person(spelt), "arrived_at": "2025-01-01"}, 400,
                                 token=token)
        assert problem == {"error": "bad_parameter", "field": "person.id_number",
                           "detail": "sequence number 000 is not issued"}


# --------------------------------------------------------------------------- text fields


HIDDEN = {
    "U+202E": "\u202e",  # right-to-left override: "Li Wei" shown as something else
    "U+2066": "\u2066",  # left-to-right isolate
    "U+200B": "\u200b",  # zero-width space: a second, identical-looking name
    "U+FEFF": "\ufeff",
    "U+0000": "\x00",
    "U+001B": "\x1b",  # an escape sequence into a terminal reading the logs
    "U+000A": "\n",  # a forged second line in a report
    "U+0085": "\x85",  # C1 next line
    "U+2028": "\u2028",
}


@pytest.mark.parametrize("code", sorted(HIDDEN))
async def test_a_name_with_a_hidden_character_is_refused_naming_field_and_character(
        api: Api, city: City, code: str) -> None:
    name = f"Li{HIDDEN[code]}Wei"
    problem = await api.call("POST", "/api/v1/registry/registrations", registration(
        city, person=person(name=name)), 400, token=city.admin.token)
    assert problem["field"] == "person.name" and code in problem["detail"]
    assert ID_A not in "".join(api.seen)


async def test_joiners_that_spell_real_names_are_kept(api: Api, city: City) -> None:
    # ZWNJ in a Uyghur name in Arabic script; a private-use character as older
    # systems spell a rare character of a Chinese name.
    for name in ("\u0626\u0627\u0628\u200c\u062f\u06c7\u0644\u0644\u0627", "王\ue000明"):
        await api.call("POST", "/api/v1/registry/buildings", {"name": name, "landlord_name": name}, 201,
                       token=city.admin.token)


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/areas", {"level": "district", "code": "440107", "name": "天河\u202e区"}, "name"),
    ("/api/v1/areas", {"level": "district", "code": "4401\u200b07", "name": "天河区"}, "code"),
    ("/api/v1/registry/buildings", {"name": "Tangxia\x0712"}, "name"),
    ("/api/v1/registry/buildings", {"name": "B", "address": "Rd 12\r\nSet-Cookie: x"}, "address"),
    ("/api/v1/registry/buildings", {"name": "B", "landlord_name": "Chen\u2067"}, "landlord_name"),
    ("/api/v1/registry/buildings", {"name": "B", "landlord_username": "chen\x00"}, "landlord_username"),
    ("/api/v1/registry/buildings", {"name": "-\u200d-"}, "name"),
    ("/api/v1/registry/buildings", {"name": "B" * 201}, "name"),
    ("/api/v1/registry/buildings", {"name": "B", "address": "A" * 301}, "address"),
    ("/api/v1/registry/buildings", {"name": "B", "landlord_phone": "١٣٨٠٠١٣٨٠٠٠"}, "landlord_phone"),
    ("/api/v1/registry/buildings", {"name": "B", "landlord_phone": "138\u00a00013\x008000"}, "landlord_phone"),
])
async def test_text_fields_are_one_bounded_visible_line(api: Api, city: City, path: str, body: dict[str, Any],
                                                        field: str) -> None:
    problem = await api.call("POST", path, body, 400, token=city.admin.token)
    assert problem["error"] == "bad_parameter" and problem["field"] == field, problem


@pytest.mark.parametrize(("extra", "field"), [
    ({"person": person(origin="广东\u202e")}, "person.origin"),
    ({"person": person(name="李" * 101)}, "person.name"),
    ({"person": person(phone="٠١٣٨٠٠١٣٨٠٠٠")}, "person.phone"),
    ({"person": person(phone="13800138000\u200b")}, "person.phone"),
    ({"credential": {"format": "wiegand26", "value": "12\u202e345"}}, "credential.value"),
    ({"credential": {"format": "em4100", "value": "14008ec79\x00"}}, "credential.value"),
    ({"credential": {"format": "em4100", "value": "14008EC793"}, "doors": ["door-1\u200b"]}, "doors.0"),
    ({"credential": {"format": "em4100", "value": "14008EC793"}, "doors": ["d"] * (MAX_DOORS + 1)}, "doors"),
    ({"arrived_at": "٢٠٢٥-٠١-٠١"}, "arrived_at"),
])
async def test_registration_fields(api: Api, city: City, extra: dict[str, Any], field: str) -> None:
    problem = await api.call("POST", "/api/v1/registry/registrations", registration(city, **extra), 400,
                             token=city.admin.token)
    assert problem["field"] == field, problem
    assert ID_A not in "".join(api.seen)


async def test_a_plate_token_with_a_control_character_is_a_400(api: Api, city: City) -> None:
    problem = await api.call("POST", "/api/v1/declarations", {
        "plate": city.plates[city.unit] + "\x1b[2J", "person": person(), "arrived_at": "2025-01-01"}, 400)
    assert problem["field"] == "plate" and "U+001B" in problem["detail"]


async def test_full_width_phone_unit_number_and_date_become_ascii(api: Api, city: City) -> None:
    unit = await api.call("POST", f"/api/v1/registry/buildings/{city.building}/units",
                          {"number": full_width("303"), "area_m2": 20, "rooms": 1}, 201, token=city.admin.token)
    assert unit["number"] == "303"
    # The ASCII spelling is that unit, not a second one beside it.
    await api.call("POST", f"/api/v1/registry/buildings/{city.building}/units",
                   {"number": "303", "area_m2": 20, "rooms": 1}, 409, token=city.admin.token)
    reg = await api.call("POST", "/api/v1/registry/registrations", registration(
        city, unit["id"], person=person(phone="\uff0b８６\u3000１３８－００１３－８０００"),
        arrived_at=full_width("2025-03-01")), 201, token=city.admin.token)
    doc = await api.call("GET", f"/api/v1/registry/persons/{reg['person_id']}", token=city.admin.token)
    assert doc["phone"] == "+86 138-0013-8000"
    assert doc["registrations"][0]["arrived_at"].startswith("2025-02-28T16:00:00")
