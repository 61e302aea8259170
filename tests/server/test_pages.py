"""The status page at ``/`` and the error pages: Chinese by default (whatever
the browser's Accept-Language), English on request; events in words, never
raw fields, paths or ids; one mask per kind of number."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import make_app
from server.ingest.store import EventStore
from server.pages.charts import grade_chart, line_chart
from server.pages.layout import GRADE_COLOURS, MIN_CONTRAST, NO_GRADE_COLOUR, contrast, text_on, when
from server.pages.masks import mask_card, mask_phone
from server.registry.idnumber import make_id_number, mask_id_number
from server.rules import CityRules
from server.settings import ServerSettings
from tests.browser.seed import SCENE_CARD, SIMULATED_GATEWAYS, seed_gateways
from tests.server.auth_helpers import bearer, make_user
from tests.server.helpers import batch, card_read, message

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
ZONE = CityRules().zone
# What must never reach a reader of the status page.
INTERNALS = ("True", "False", "None", "outbox_id", "outbox_first_seq", "online=", "detail=", "pending=",
             "ob-7f3a9c", "Errno", "line-1")


def visible_text(html: str) -> str:
    """The page's text as a person reads it: no tags, no <style>, no attributes."""
    html = re.sub(r"<style>.*?</style>", "", html, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
async def client(sqlite_engine: sa.Engine, sqlite_url: str, aiohttp_client: MakeClient) -> Client:
    EventStore(sqlite_engine).commit([message("gw-a", batch("gw-a", [card_read("gw-a", 1, door="east-gate")]))])
    admin = make_user(sqlite_engine)
    return await aiohttp_client(make_app(ServerSettings(database_url=sqlite_url), ingest=False),
                                headers=bearer(admin.token))


@pytest.fixture
async def scene(sqlite_engine: sa.Engine, sqlite_url: str, aiohttp_client: MakeClient,
                tmp_path: Path) -> tuple[Client, str]:
    data_dir = str(tmp_path / "rentgate-data")
    seed_gateways(sqlite_engine, data_dir)
    admin = make_user(sqlite_engine)
    client = await aiohttp_client(make_app(ServerSettings(database_url=sqlite_url), ingest=False),
                                  headers=bearer(admin.token))
    return client, data_dir


async def test_page_is_chinese_by_default_and_shows_the_swipe_masked(client: Client) -> None:
    response = await client.get("/")
    assert response.status == 200
    html = await response.text()
    assert '<html lang="zh-CN">' in html
    assert "最近进出记录" in html and "刷卡" in html and "east-gate" in html
    assert "0A1B2C3D4E" not in html
    assert "****3D4E" in html
    assert 'name="viewport"' in html  # usable on a phone


async def test_english_only_when_asked_and_then_remembered(client: Client) -> None:
    response = await client.get("/", params={"lang": "en"})
    html = await response.text()
    assert '<html lang="en">' in html and "Recent entries" in html and "card ****3D4E" in html
    assert response.cookies["rentgate_lang"].value == "en"
    # The cookie now carries the choice to pages without ?lang=.
    assert '<html lang="en">' in await (await client.get("/landlord")).text()


@pytest.mark.parametrize("accept", ["en-GB,en;q=0.9", "en-US", "fr-FR,en;q=0.5", ""])
async def test_an_english_browser_still_gets_chinese(client: Client, accept: str) -> None:
    for path in ("/", "/landlord", "/login", "/nope"):
        html = await (await client.get(path, headers={"Accept-Language": accept})).text()
        assert '<html lang="zh-CN">' in html, path


async def test_status_page_says_what_happened_in_words(scene: tuple[Client, str]) -> None:
    client, data_dir = scene
    html = await (await client.get("/")).text()
    text = visible_text(html)
    assert "网关已启动（软件版本 0.1.0）" in text
    assert "设备 1号线 在线" in text and "设备 2号线 离线" in text
    assert "设备 1号线 防拆报警：外壳被打开" in text
    assert "网关存储已满，12 条事件未能送到服务器就被删除了" in text
    assert "正门" in text and "后门" in text and "拒绝：已注销" in text and "强行开门（报警）" in text
    assert f"刷卡 {mask_card(SCENE_CARD)} · 放行" in text and SCENE_CARD not in html
    assert data_dir not in html and "/tmp/" not in html
    for token in INTERNALS:
        assert token not in text, token


async def test_status_page_in_english_says_the_same(scene: tuple[Client, str]) -> None:
    client, data_dir = scene
    text = visible_text(await (await client.get("/", params={"lang": "en"})).text())
    assert "Gateway started (software version 0.1.0)" in text
    assert "device 2号线 offline" in text and "tamper alarm: casing opened" in text
    assert "The gateway's storage was full: 12 events were deleted before reaching the server" in text
    assert "denied: revoked" in text and "forced open (alarm)" in text
    assert data_dir not in text
    for token in INTERNALS:
        assert token not in text, token


async def test_gateways_have_states_a_person_understands(scene: tuple[Client, str]) -> None:
    client, _ = scene
    html = await (await client.get("/")).text()
    states = dict(re.findall(r'data-gateway="([^"]+)" data-state="([^"]+)"', html))
    # The simulated gateways sent swipes but never a status: not "never
    # connected" (their data is right there), not offline, but unknown, said so.
    assert states == {"gw-main": "online", "gw-old": "offline", **dict.fromkeys(SIMULATED_GATEWAYS, "silent")}
    assert "未知" not in html
    silent = html[html.index('data-gateway="sim-gw-1"'):]
    silent = silent[:silent.index("</div></div>") if "</div></div>" in silent else len(silent)]
    assert "未报告状态" in silent and "从未收到它的在线状态" in silent and "从未连接" not in silent
    assert 'class="chip silent"' in silent


async def test_times_carry_their_date_and_old_ones_their_year(scene: tuple[Client, str]) -> None:
    client, _ = scene
    text = visible_text(await (await client.get("/")).text())
    now = datetime.now(UTC).astimezone(ZONE)
    assert f"{now.month}月{now.day}日" in text
    assert f"{now.year - 1}年" in text or f"{now.year - 2}年" in text  # the 400-day-old gateway and swipes
    # Newest first by when it happened: the old swipes come after today's.
    assert text.index("网关存储已满") < text.index("door-1")


def test_when_writes_dates_people_read() -> None:
    t_zh = {"when.this_year": "{month}月{day}日 {hm}", "when.other_year": "{year}年{month}月{day}日 {hm}"}
    now = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    assert when(t_zh, datetime(2026, 12, 5, 6, 3, tzinfo=UTC), ZONE, now) == "12月5日 14:03"
    assert when(t_zh, datetime(2025, 3, 1, 0, 0, tzinfo=UTC), ZONE, now) == "2025年3月1日 08:00"
    t_en = {"when.this_year": "{day} {mon} {hm}", "when.other_year": "{day} {mon} {year} {hm}"}
    assert when(t_en, "2026-12-05T06:03:00+00:00", ZONE, now) == "5 Dec 14:03"


@pytest.mark.parametrize("value, masked", [("0A1B2C3D4E", "****3D4E"), ("0A1B2C3D4F", "****3D4F"),
                                           ("90:324", "****324"), ("ABC", "****C"), ("AB", "****B"),
                                           ("", ""), (None, "")])
def test_card_numbers_are_masked_the_same_way_everywhere(value: str | None, masked: str) -> None:
    assert mask_card(value) == masked


def test_card_masks_do_not_tell_the_length_and_tell_cards_apart() -> None:
    assert mask_card("0A1B2C3D4E").count("*") == mask_card("1122334455667788").count("*") == 4
    assert mask_card("0A1B2C3D4E") != mask_card("0A1B2C3D4F")
    for value in ("0A1B2C3D4E", "90:324", "1122334455667788"):
        assert len(mask_card(value).strip("*")) <= len(value) // 2


def test_phones_and_identity_numbers_have_one_mask_each() -> None:
    assert mask_phone("13812341234") == "138****1234" == mask_phone("138 1234 1234")
    assert mask_phone(None) == ""
    number = make_id_number("440104", datetime(1990, 5, 17).date(), 123)
    assert mask_id_number(number) == number[:4] + "*" * 10 + number[-4:]


def test_grade_labels_have_enough_contrast() -> None:
    for colour in (*GRADE_COLOURS.values(), NO_GRADE_COLOUR):
        assert contrast(text_on(colour), colour) >= MIN_CONTRAST, colour
    # The overview's grade chart writes its labels on white, not on the bars.
    svg = grade_chart("等级", [("strict", "严控", GRADE_COLOURS["strict"], 3)], 3)
    assert re.search(r'<text [^>]*fill="#222222">严控 3/3</text>', svg)
    assert contrast("#222222", "#ffffff") >= MIN_CONTRAST


def test_a_trend_of_one_day_shows_its_value_and_day_once() -> None:
    svg = line_chart("居住登记率", [("12月5日", 9, 10)])
    assert svg.count(">12月5日<") == 1 and svg.count(">90.0% (9/10)<") == 1
    two = line_chart("居住登记率", [("12月4日", 8, 10), ("12月5日", 9, 10)])
    labels = re.findall(r'class="x-label" x="([\d.]+)"', two)
    assert len(labels) == 2 and float(labels[1]) - float(labels[0]) > 200  # far apart, no overlap


# --------------------------------------------------------------------------- error pages


@pytest.mark.parametrize("path, status, title", [
    ("/nope", 404, "页面不存在"), ("/landlord/units/abc", 404, "页面不存在"), ("/landlord/units/999999", 404, "页面不存在"),
    ("/c/tasks/999999", 404, "页面不存在"),
])
async def test_unknown_pages_answer_a_page_in_chinese_with_a_way_home(client: Client, path: str, status: int,
                                                                      title: str) -> None:
    response = await client.get(path, headers={"Accept-Language": "en-US"})
    assert response.status == status and response.content_type == "text/html"
    html = await response.text()
    assert '<html lang="zh-CN">' in html and title in html and 'class="button home" href="/overview"' in html
    assert "404: Not Found" not in html and 'name="viewport"' in html


async def test_error_pages_in_english(client: Client) -> None:
    html = await (await client.get("/nope", params={"lang": "en"})).text()
    assert '<html lang="en">' in html and "Page not found" in html and "Back to the home page" in html


async def test_wrong_method_is_a_405_page_that_says_what_is_allowed(client: Client) -> None:
    response = await client.put("/landlord")
    assert response.status == 405 and "无法这样打开此页面" in await response.text()
    assert "GET" in response.headers["Allow"]


async def test_a_form_without_its_csrf_token_gets_a_403_page(sqlite_engine: sa.Engine, sqlite_url: str,
                                                             aiohttp_client: MakeClient) -> None:
    make_user(sqlite_engine, role="landlord", username="ll")
    client = await aiohttp_client(make_app(ServerSettings(database_url=sqlite_url), ingest=False))
    await client.post("/login", data={"username": "ll", "password": "pw-secret-1"}, allow_redirects=False)
    response = await client.post("/landlord/units/1/register", data={"name": "x"})
    html = await response.text()
    assert response.status == 403 and response.content_type == "text/html"
    assert "无权访问" in html and "刷新页面" in html and "CSRF" not in html


async def test_a_body_too_large_gets_a_413_page(client: Client) -> None:
    response = await client.post("/login", data=b"x" * (2 * 1024 * 1024),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 413 and "提交的内容太大" in await response.text()


async def test_a_server_error_says_nothing_of_its_insides(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.pages import dashboard

    def broken(*_: object) -> list[object]:
        raise RuntimeError("secret /srv/rentgate/data/db.sqlite exploded")

    monkeypatch.setattr(dashboard, "recent_events", broken)
    response = await client.get("/")
    html = await response.text()
    assert response.status == 500 and "服务器出错了" in html
    for leak in ("secret", "/srv/", "RuntimeError", "Traceback"):
        assert leak not in html


async def test_the_api_keeps_its_json_errors(client: Client) -> None:
    bad = await client.get("/api/v1/events", params={"limit": "many"})
    assert bad.status == 400 and (await bad.json())["error"] == "bad_parameter"
    anonymous = await client.get("/api/v1/events", headers={"Authorization": ""})
    assert anonymous.content_type == "application/json"
    missing = await client.get("/api/v1/nope")
    assert missing.status == 404 and missing.content_type != "text/html"
    assert (await client.get("/healthz")).content_type == "application/json"
