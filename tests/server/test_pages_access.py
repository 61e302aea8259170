"""The landlord pages over plain HTTP: who may open what, CSRF, masking,
errors on the form, the self-declaration and the overview's numbers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import make_app
from server.pages.masks import mask_card
from server.registry.idnumber import mask_id_number
from server.settings import ServerSettings
from tests.browser.seed import DECLARANT_ID, SILENT_ID, TENANT_ID, World, seed

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def world(sqlite_engine: sa.Engine, sqlite_url: str) -> World:
    return seed(sqlite_engine, sqlite_url)


@pytest.fixture
async def client(world: World, sqlite_url: str, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(make_app(ServerSettings(database_url=sqlite_url), ingest=False))


async def login(client: Client, username: str, password: str = "pw-secret-1") -> None:
    response = await client.post("/login", data={"username": username, "password": password, "next": ""},
                                 allow_redirects=False)
    assert response.status == 303, await response.text()


async def csrf(client: Client, path: str) -> str:
    html = await (await client.get(path)).text()
    found = _CSRF.search(html)
    assert found, html
    return found.group(1)


async def test_anonymous_visitor_is_sent_to_login_and_back(client: Client, world: World) -> None:
    response = await client.get(f"/landlord/units/{world.empty_unit_id}", allow_redirects=False)
    assert response.status == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login" and parse_qs(location.query)["next"] == [f"/landlord/units/{world.empty_unit_id}"]
    response = await client.post("/login", data={"username": "landlord-a", "password": "pw-secret-1",
                                                 "next": f"/landlord/units/{world.empty_unit_id}"},
                                 allow_redirects=False)
    assert response.headers["Location"] == f"/landlord/units/{world.empty_unit_id}"


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
async def test_login_never_redirects_off_site(client: Client, target: str) -> None:
    response = await client.post("/login", data={"username": "landlord-a", "password": "pw-secret-1",
                                                 "next": target}, allow_redirects=False)
    assert response.headers["Location"] == "/landlord"


async def test_wrong_password_and_throttling_are_explained(client: Client) -> None:
    response = await client.post("/login", data={"username": "landlord-a", "password": "wrong-password"})
    assert response.status == 401
    assert "用户名或密码错误" in await response.text()
    for _ in range(5):
        response = await client.post("/login", data={"username": "landlord-a", "password": "wrong-password"})
    assert response.status == 429
    assert "尝试次数过多" in await response.text()


async def test_landlord_cannot_open_another_landlords_building_or_unit(client: Client, world: World) -> None:
    await login(client, "landlord-a")
    # Another landlord's building is answered like one that does not exist.
    for path in (f"/landlord/buildings/{world.other_building_id}", f"/landlord/units/{world.other_unit_id}"):
        response = await client.get(path)
        assert response.status == 404
        assert "页面不存在" in await response.text()
    token = await csrf(client, "/landlord")
    response = await client.post(f"/landlord/units/{world.other_unit_id}/register",
                                 data={"csrf": token, "id_number": TENANT_ID, "name": "x", "arrived": "2024-01-01"})
    assert response.status == 404
    listing = await (await client.get("/landlord")).text()
    assert "幸福楼" in listing and "别人楼" not in listing


async def test_overview_is_for_administrators_not_landlords(client: Client) -> None:
    await login(client, "landlord-a")
    assert (await client.get("/overview")).status == 403


async def test_a_form_without_the_csrf_token_is_refused(client: Client, world: World, sqlite_engine: sa.Engine
                                                        ) -> None:
    await login(client, "landlord-a")
    response = await client.post(f"/landlord/units/{world.empty_unit_id}/register",
                                 data={"id_number": TENANT_ID, "name": "张三", "arrived": "2024-01-01"})
    assert response.status == 403
    with sqlite_engine.connect() as conn:
        count = conn.execute(sa.text("SELECT COUNT(*) FROM registrations WHERE unit_id = :u"),
                             {"u": world.empty_unit_id}).scalar()
    assert count == 0


async def test_identity_numbers_and_phones_are_masked(client: Client, world: World) -> None:
    await login(client, "landlord-a")
    html = await (await client.get(f"/landlord/units/{world.silent_unit_id}")).text()
    assert "王五" in html
    assert SILENT_ID not in html and SILENT_ID[6:14] not in html  # not even the birth date
    assert mask_id_number(SILENT_ID) in html
    assert "13800138000" not in html and "138****8000" in html


async def test_an_invalid_number_comes_back_in_chinese_and_is_not_echoed(client: Client, world: World) -> None:
    await login(client, "landlord-a")
    token = await csrf(client, f"/landlord/units/{world.empty_unit_id}")
    wrong = TENANT_ID[:17] + ("0" if TENANT_ID[17] != "0" else "1")
    response = await client.post(f"/landlord/units/{world.empty_unit_id}/register",
                                 data={"csrf": token, "id_number": wrong, "name": "张三", "arrived": "2024-01-01"})
    assert response.status == 400
    html = await response.text()
    assert "身份证号码校验位错误" in html and wrong not in html
    assert 'value="张三"' in html  # the rest of the form is kept
    response = await client.post(f"/landlord/units/{world.empty_unit_id}/register",
                                 data={"csrf": token, "id_number": TENANT_ID[:10], "name": "张三",
                                       "arrived": "2024-01-01", "card": "XYZ"})
    html = await response.text()
    assert "身份证号码应为18位" in html and "EM4100 卡号应为10位十六进制数字" in html


async def test_register_with_card_then_deregister(client: Client, world: World, sqlite_engine: sa.Engine) -> None:
    await login(client, "landlord-a")
    path = f"/landlord/units/{world.empty_unit_id}"
    token = await csrf(client, path)
    response = await client.post(f"{path}/register", allow_redirects=False, data={
        "csrf": token, "id_number": TENANT_ID, "name": "张三", "phone": "13912345678", "origin": "广东梅州",
        "arrived": "2024-03-01", "card": "0a1b2c3d4e"})
    assert response.status == 303 and response.headers["Location"] == f"{path}?ok=registered_ok"
    html = await (await client.get(response.headers["Location"])).text()
    assert "已登记" in html and "张三" in html and mask_id_number(TENANT_ID) in html and TENANT_ID not in html
    assert mask_card("0A1B2C3D4E") in html and "0A1B2C3D4E" not in html
    reg_id = int(re.search(r'class="card occupant" data-registration="(\d+)"', html).group(1))  # type: ignore[union-attr]
    response = await client.post(f"/landlord/registrations/{reg_id}/deregister", allow_redirects=False,
                                 data={"csrf": token, "departed": "2024-04-01", "reason": "moved"})
    assert response.status == 303
    html = await (await client.get(response.headers["Location"])).text()
    assert "已注销登记" in html and "张三" not in html
    with sqlite_engine.connect() as conn:
        revoked = conn.execute(sa.text("SELECT revoked_at FROM credentials WHERE value = '0A1B2C3D4E'")).scalar()
    assert revoked is not None


def declare_path(engine: sa.Engine, database_url: str, unit_id: int) -> str:
    """The self-declaration page of the unit's door plate (issued here)."""
    from server.plates.keys import load_keyring
    from server.plates.service import ensure_plates

    with engine.begin() as conn:
        token = ensure_plates(conn, datetime.now(UTC), load_keyring(None, database_url), [unit_id], valid_days=0,
                              actor="test")[unit_id]
    return f"/p/{token}/declare"


async def test_self_declaration_waits_and_the_landlord_confirms(client: Client, world: World,
                                                                sqlite_engine: sa.Engine, sqlite_url: str) -> None:
    path = declare_path(sqlite_engine, sqlite_url, world.empty_unit_id)
    response = await client.post(path, allow_redirects=False, data={
        "id_number": DECLARANT_ID, "name": "李四", "arrived": "2024-05-01"})
    assert response.status == 303
    assert "等待房东或网格员确认" in await (await client.get(response.headers["Location"])).text()
    await login(client, "landlord-a")
    html = await (await client.get(f"/landlord/buildings/{world.building_id}")).text()
    assert "李四" in html and DECLARANT_ID not in html
    reg_id = re.search(r'class="card declaration" data-registration="(\d+)"', html).group(1)  # type: ignore[union-attr]
    token = _CSRF.search(html).group(1)  # type: ignore[union-attr]
    response = await client.post(f"/landlord/registrations/{reg_id}/confirm", data={"csrf": token})
    html = await response.text()
    assert "已确认申报" in html and "没有待确认的申报" in html
    unit_html = await (await client.get(f"/landlord/units/{world.empty_unit_id}")).text()
    assert "李四" in unit_html and "自主申报" in unit_html


async def test_departure_prompt_answered_has_left(client: Client, world: World) -> None:
    await login(client, "landlord-a")
    html = await (await client.get(f"/landlord/buildings/{world.building_id}")).text()
    assert "王五" in html and "仍在住" in html
    token = _CSRF.search(html).group(1)  # type: ignore[union-attr]
    response = await client.post(f"/landlord/cases/{world.departure_case_id}/departure",
                                 data={"csrf": token, "answer": "left", "left_on": "2000-01-01"})
    assert response.status == 400  # before the arrival: said on the page, nothing changes
    assert "搬离" in await response.text()
    left_on = (datetime.now(UTC) - timedelta(days=20)).date().isoformat()
    response = await client.post(f"/landlord/cases/{world.departure_case_id}/departure",
                                 data={"csrf": token, "answer": "left", "left_on": left_on})
    assert response.status == 200
    html = await response.text()
    assert "已记录您的回答" in html and "没有需要回答的问题" in html
    assert "王五" not in await (await client.get(f"/landlord/units/{world.silent_unit_id}")).text()


async def test_overview_shows_the_rates_per_area_with_numbers(client: Client) -> None:
    await login(client, "admin-1")
    html = await (await client.get("/overview")).text()
    assert "<svg" in html and "越秀区" in html
    html = await (await client.get("/overview", params={"area": "C1", "lang": "en"})).text()
    # Grid 1: its one registration is under a presumed-departure case (not consistent); grid 2: consistent.
    assert 'data-label="一网格" data-numerator="0" data-denominator="1"' in html
    assert 'data-label="二网格" data-numerator="1" data-denominator="1"' in html
    assert "Person–address consistency rate" in html
    assert (await client.get("/overview", params={"area": "nope"})).status == 404


async def test_the_declaration_page_shares_the_apis_hourly_budget(client: Client, world: World,
                                                                  sqlite_engine: sa.Engine, sqlite_url: str) -> None:
    # Each attempt names a new person (invalid ones are refused before they
    # count): the budget is per address, whatever is declared.
    from datetime import date

    from server.plates.declare_api import DECLARATIONS_PER_HOUR
    from server.registry.idnumber import make_id_number

    path = declare_path(sqlite_engine, sqlite_url, world.empty_unit_id)
    statuses = []
    for n in range(DECLARATIONS_PER_HOUR + 1):
        number = make_id_number("440106", date(1991, 1, 1), 100 + n)
        response = await client.post(path, allow_redirects=False, data={
            "id_number": number, "name": f"申报人{n}", "arrived": "2024-05-01"})
        statuses.append(response.status)
    assert statuses[-1] == 429 and 429 not in statuses[:-1]
    assert "申报过于频繁" in await response.text()


async def test_the_trend_ends_at_the_newest_snapshot(client: Client, sqlite_engine: sa.Engine) -> None:
    """A district whose sweeps stopped (or was simulated in the past) still
    shows its last month rather than an empty chart."""
    from datetime import date

    from server.db.models import areas, rate_snapshots

    with sqlite_engine.begin() as conn:
        district = conn.execute(sa.select(areas.c.id).where(areas.c.code == "D1")).scalar_one()
        for offset, registered in ((0, 8), (1, 9)):
            conn.execute(sa.insert(rate_snapshots).values(
                area_id=district, day=date(2024, 3, 1 + offset), taken_at=datetime(2024, 3, 1, tzinfo=UTC),
                counts={"registration": [registered, 10], "rental": [1, 1], "consistency": [1, 1],
                        "pledge": [1, 1]}))
    await login(client, "admin-1")
    html = await (await client.get("/overview", params={"lang": "en"})).text()
    assert "1 Mar 2024" in html and "2 Mar 2024" in html and "90.0% (9/10)" in html


async def test_a_name_with_a_hidden_direction_character_is_refused_on_the_page_too(
        client: Client, world: World, sqlite_engine: sa.Engine) -> None:
    """The page writes through the registry service, which applies the API's
    text rule itself: U+202E would make the name read differently than it shows."""
    def count() -> int:
        with sqlite_engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM registrations")).scalar_one())

    before = count()
    await login(client, "landlord-a")
    token = await csrf(client, f"/landlord/units/{world.empty_unit_id}")
    response = await client.post(f"/landlord/units/{world.empty_unit_id}/register",
                                 data={"csrf": token, "id_number": TENANT_ID, "name": "张\u202e三",
                                       "arrived": "2024-01-01"})
    assert response.status == 400
    html = await response.text()
    assert "姓名：含有看不见的字符或控制字符（U+202E）" in html
    assert count() == before
