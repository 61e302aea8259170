"""A small city for the scan and patrol tests, made through the registry
functions on the test's database (SQLite or PostgreSQL): grids G1 and G2,
a building in each, unit 101 (graded 重点, one registered tenant with a card
that the doors saw, one pending self-declaration, an open case) and 102 in
G1, unit 201 in G2; coordinators assigned to each grid, an administrator
and a landlord; plates for every unit; server settings with keys and a
media folder in the test's temporary folder."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient
from PIL import Image

from server.db.models import cases, events, gateways, grid_coordinators, presence, units
from server.plates.keys import read_keyring, rotate
from server.plates.service import ensure_plates
from server.registry import service
from server.registry.idnumber import make_id_number
from server.registry.pii import load_vault, write_key_file
from server.rules import CityRules
from server.settings import ServerSettings
from server.web.transactions import write_transaction
from tests.server.auth_helpers import UserCreds, make_user

Client = TestClient[web.Request, web.Application]
ACTOR = "test:scan-world"
TENANT_ID = make_id_number("440104", date(1990, 5, 17), 123)
DECLARANT_ID = make_id_number("430102", date(2000, 1, 9), 12)
NEW_ID = make_id_number("450102", date(1998, 3, 4), 77)
CARD = "0A1B2C3D4E"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
# For tests of input checks and in-memory limits, whose SQL the other tests
# already run on both databases: PostgreSQL's setup is the slow part.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass(frozen=True)
class ScanWorld:
    settings: ServerSettings
    admin: UserCreds
    coordinator: UserCreds
    other_coordinator: UserCreds
    landlord: UserCreds
    building_id: int
    unit_id: int
    quiet_unit_id: int
    other_unit_id: int
    tenant_person_id: int
    case_id: int
    tokens: dict[int, str]
    key_file: Path


def database_url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def build(engine: sa.Engine, tmp_path: Path) -> ScanWorld:
    url = database_url(engine)
    pii_key, plate_keys = tmp_path / "pii.key", tmp_path / "plate-keys"
    write_key_file(pii_key)
    rotate(plate_keys)
    settings = ServerSettings(database_url=url, pii_key_file=str(pii_key), plate_key_file=str(plate_keys),
                              media_dir=str(tmp_path / "media"))
    vault = load_vault(str(pii_key), url)
    rules = CityRules()
    admin = make_user(engine, "admin")
    coordinator = make_user(engine, "coordinator")
    other = make_user(engine, "coordinator")
    landlord = make_user(engine, "landlord")
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        for level, code, name, parent in (("district", "D1", "越秀区", None), ("street", "S1", "北京街", "D1"),
                                          ("community", "C1", "盐运西社区", "S1"), ("grid", "G1", "一网格", "C1"),
                                          ("grid", "G2", "二网格", "C1")):
            service.create_area(conn, now, ACTOR, level=level, code=code, name=name, parent_code=parent)
        grids = dict(conn.execute(sa.text("SELECT code, id FROM areas WHERE level = 'grid'")).tuples().all())
        for user, grid in ((coordinator, "G1"), (other, "G2")):
            conn.execute(sa.insert(grid_coordinators).values(grid_id=grids[grid], user_id=user.id, assigned_at=now,
                                                             assigned_by=ACTOR))
        building = service.create_building(conn, now, ACTOR, name="幸福楼", address="越秀区北京街12号", grid_code="G1",
                                           landlord_name="张三丰", landlord_phone="13812341234",
                                           landlord_user_id=landlord.id, is_rental=True)
        other_building = service.create_building(conn, now, ACTOR, name="别人楼", address="越秀区北京街20号",
                                                 grid_code="G2", is_rental=True)
        unit = service.create_unit(conn, now, ACTOR, rules, building_id=building["id"], number="101", area_m2=30.0,
                                   rooms=2, floor=1)
        quiet = service.create_unit(conn, now, ACTOR, rules, building_id=building["id"], number="102", area_m2=20.0,
                                    rooms=1, floor=1)
        other_unit = service.create_unit(conn, now, ACTOR, rules, building_id=other_building["id"], number="201",
                                         area_m2=25.0, rooms=1, floor=2)
        conn.execute(sa.update(units).where(units.c.id == unit["id"]).values(grade="watch"))
        reg = service.register(conn, now, ACTOR, vault, unit_id=unit["id"], arrived_at=now - timedelta(days=40),
                               source="landlord", credential=("em4100", CARD),
                               person=service.PersonFields(TENANT_ID, "王五", "13800138000", "湖南长沙"))
        service.declare(conn, now, ACTOR, vault, unit_id=unit["id"], arrived_at=now - timedelta(days=2),
                        person=service.PersonFields(DECLARANT_ID, "李四", None, None))
        person_id = reg.body["person_id"]
        conn.execute(sa.insert(gateways).values(id="gw-xf", first_seen=now, last_seen=now,
                                                building_id=building["id"]))
        for seq in range(1, 4):
            at = now - timedelta(hours=seq)
            conn.execute(sa.insert(events).values(
                gateway_id="gw-xf", seq=seq, kind="card_read", device="r1", door="东门", occurred_at=at,
                received_at=at, stored_at=at, credential_format="em4100", credential_value=CARD,
                data={"decision": "granted"}))
        conn.execute(sa.insert(presence).values(
            unit_id=unit["id"], building_id=building["id"], subject=f"p{person_id}", person_id=person_id,
            first_seen_at=now - timedelta(days=30), last_seen_at=now - timedelta(hours=1), last_day=0, days_seen=25,
            events=80))
        conn.execute(sa.insert(presence).values(
            unit_id=unit["id"], building_id=building["id"], subject="c999", credential_id=999,
            first_seen_at=now - timedelta(days=5), last_seen_at=now - timedelta(hours=2), last_day=0, days_seen=4,
            events=9))
        case_id = conn.execute(sa.insert(cases).values(
            kind="unregistered_occupant", subject=f"u{unit['id']}/c999", state="open", building_id=building["id"],
            unit_id=unit["id"], credential_id=999, evidence_at=now - timedelta(days=5), opened_at=now,
            evidence={"days_seen": 4}, updated_at=now).returning(cases.c.id)).scalar_one()
        tokens = ensure_plates(conn, now, read_keyring(plate_keys), [unit["id"], quiet["id"], other_unit["id"]],
                               valid_days=rules.plate_valid_days, actor=ACTOR)
    return ScanWorld(settings, admin, coordinator, other, landlord, building["id"], unit["id"], quiet["id"],
                     other_unit["id"], person_id, case_id, tokens, plate_keys)


def jpeg_bytes(size: tuple[int, int] = (64, 48), *, gps: bool = False, orientation: int | None = None) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if gps:
        info = exif.get_ifd(0x8825)
        info[1] = "N"
        info[2] = (23.0, 7.0, 30.0)
        info[3] = "E"
        info[4] = (113.0, 15.0, 10.0)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def png_bytes(size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, (0, 128, 0, 128)).save(out, "PNG")
    return out.getvalue()


def gif_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (10, 10), (0, 0, 255)).save(out, "GIF")
    return out.getvalue()


async def login(client: Client, user: UserCreds) -> str:
    """Log in with the cookie session; the CSRF token for forms."""
    response = await client.post("/login", data={"username": user.username, "password": user.password, "next": ""},
                                 allow_redirects=False)
    assert response.status == 303, await response.text()
    html = await (await client.get("/overview")).text()
    found = CSRF.search(html)
    assert found, html
    return found.group(1)


async def post_multipart(client: Client, path: str, data: dict[str, object], *,
                         headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    """A multipart form as a browser sends it; a tuple value (file name,
    bytes, declared type) is a file, a list repeats the field."""
    form = aiohttp.FormData()
    for key, value in data.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, tuple):
                form.add_field(key, item[1], filename=item[0], content_type=item[2])
            else:
                form.add_field(key, str(item))
    return await client.post(path, data=form, allow_redirects=False, headers=headers)
