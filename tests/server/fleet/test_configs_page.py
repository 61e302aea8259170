"""A terminal's configuration page: the landlord of its building (and an
administrator) sees what it runs, what became of the newest version and
why, edits the settings as TOML and sees each problem with its key path in
words; both languages, no internals in the text, fits a 390 px phone
(the viewport and no fixed widths); another landlord's terminal is a 404."""

from __future__ import annotations

import re
import tomllib
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.app import make_app
from server.db.models import gateway_configs
from server.fleet.config_service import record_once
from server.pages import toml_text
from server.pages.texts_gateway_config import TEXTS
from tests.server.fleet.config_helpers import World, add_gateway, config_settings, report_status, seed
from tests.server.registry.api_helpers import Client, MakeClient

PAGE = "/landlord/gateways/gw-a1/config"
INTERNALS = re.compile(r"\b(True|False|None)\b|Traceback|/work/|/tmp/|<[a-z]+ object at")


@pytest.fixture
async def setup(sqlite_engine: sa.Engine, sqlite_url: str, tmp_path: Path,
                aiohttp_client: MakeClient) -> tuple[Client, World]:
    client = await aiohttp_client(make_app(config_settings(sqlite_url, tmp_path), ingest=False))
    return client, seed(sqlite_engine)


async def login(client: Client, username: str, password: str = "pw-secret-1") -> str:
    response = await client.post("/login", data={"username": username, "password": password},
                                 allow_redirects=False)
    assert response.status in (302, 303), await response.text()
    page = await (await client.get("/landlord")).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def visible_text(html: str) -> str:
    html = re.sub(r"<(style|script)[^>]*>.*?</\1>", "", html, flags=re.S)
    html = re.sub(r"<textarea[^>]*>.*?</textarea>", "", html, flags=re.S)  # the settings, as the user wrote them
    return unescape(re.sub(r"<[^>]+>", " ", html))


def test_settings_written_as_toml_read_back_the_same() -> None:
    doc: dict[str, Any] = {
        "heartbeat_s": 15, "broker_url": "mqtts://broker.example.cn:8883",
        "outbox": {"max_events": 5000, "synchronous": "normal"},
        "access": {"rules": {"night": [1, 2]}, "name with space": "门 \"A\"\n"},
        "devices": [{"type": "em4100", "id": "r1", "port": "/dev/ttyUSB0", "options": {"baud": 9600}},
                    {"type": "osdp", "id": "r2", "enabled": False, "ratio": 0.5, "lines": [{"a": 1}, 3]}],
        "cameras": [],
    }
    assert tomllib.loads(toml_text.dumps(doc)) == doc
    assert toml_text.dumps({}) == ""
    assert tomllib.loads(toml_text.dumps({"a": None, "b": 1})) == {"b": 1}


def test_every_text_is_in_both_languages() -> None:
    assert set(TEXTS["zh"]) == set(TEXTS["en"])


async def test_the_landlord_sees_edits_and_the_history(setup: tuple[Client, World], sqlite_engine: sa.Engine) -> None:
    client, w = setup
    csrf = await login(client, w.landlord_a.username)
    html = await (await client.get(PAGE)).text()
    assert 'name="viewport" content="width=device-width' in html and "终端配置" in html
    assert "终端还没有报告它运行的配置" in html and "还没有修改记录" in html
    # Save a version from the form.
    # The outbox is an administrator's: refused in words, nothing stored.
    refused = await client.post(PAGE, data={"csrf": csrf, "settings": "[outbox]\nmax_events = 10\n"},
                                allow_redirects=False)
    assert refused.status == 400 and "只有管理员可以更改这一项" in await refused.text()
    form = {"csrf": csrf, "settings": "heartbeat_s = 12\n\n[cameras]\nfollow_s = 4.0\n", "gate_s": "45",
            "comment": "心跳改为 12 秒"}
    response = await client.post(PAGE, data=form, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == PAGE + "?ok=saved_later"
    with sqlite_engine.connect() as conn:
        row = conn.execute(sa.select(gateway_configs.c.settings, gateway_configs.c.gate_s,
                                     gateway_configs.c.created_by)).one()
    assert row == ({"heartbeat_s": 12, "cameras": {"follow_s": 4.0}}, 45.0, w.landlord_a.id)
    html = await (await client.get(PAGE + "?ok=saved_later")).text()
    assert "已保存第 1 版" in html and "等待终端确认" in html and "心跳改为 12 秒" in html
    assert f"修改人：{w.landlord_a.username}" in html and "改动：cameras, heartbeat_s" in html
    assert "follow_s = 4.0" in html  # the form shows the settings as TOML
    # The terminal rolls it back: the page says so, and why.
    report_status(sqlite_engine, "gw-a1", running=None, attempted=1, state="rolled_back",
                  error="读卡器 r1 30 秒没有心跳")
    record_once(sqlite_engine)
    html = await (await client.get(PAGE)).text()
    assert "没能正常运行，终端已自动退回上一版" in html and "读卡器 r1 30 秒没有心跳" in html
    assert "正在使用终端本机的设置" in html
    text = visible_text(html)
    assert not INTERNALS.search(text), INTERNALS.search(text)
    # English.
    html = await (await client.get(PAGE + "?lang=en")).text()
    assert "Terminal configuration" in html and "went back to the previous version" in html
    assert not INTERNALS.search(visible_text(html))


async def test_problems_are_shown_with_their_key_paths_and_nothing_is_saved(
        setup: tuple[Client, World], sqlite_engine: sa.Engine) -> None:
    client, w = setup
    csrf = await login(client, w.landlord_a.username)
    cases = (
        ("heartbeat_s = \n", "第 1 行附近格式不对"),
        ('mqtt_url = "mqtt://elsewhere"\n', "mqtt_url：不能在这里设置"),
        ('[[devices]]\ntype = "nonsense"\nid = "r1"\n', "devices → 第1项 → type"),
        ("[access]\npublic_keys = {}\n", "access → public_keys：门禁验证密钥不能在这里设置"),
    )
    for settings, expected in cases:
        response = await client.post(PAGE, data={"csrf": csrf, "settings": settings, "gate_s": "30"})
        html = await response.text()
        assert response.status == 400 and expected in html, (settings, visible_text(html)[:600])
        assert "配置没有保存" in html
    response = await client.post(PAGE, data={"csrf": csrf, "settings": "", "gate_s": "1"})
    assert response.status == 400 and "检查时间应在 5 到 600 秒之间" in await response.text()
    response = await client.post(PAGE, data={"csrf": csrf, "settings": "", "comment": "a\x00b"})
    assert response.status == 400 and "控制字符" in await response.text()
    response = await client.post(PAGE, data={"csrf": csrf, "settings": 'heartbeat_s = 5\nbroker_url = "a\\u0000"\n'})
    assert response.status == 400, await response.text()
    response = await client.post(PAGE, data={"csrf": csrf, "settings": "a = 1\n" * 50_000})
    assert response.status == 400 and "配置太长了" in await response.text()
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(gateway_configs)).scalar() == 0


async def test_other_landlords_terminal_and_a_stopped_one(setup: tuple[Client, World], sqlite_engine: sa.Engine) -> None:
    client, w = setup
    await login(client, w.landlord_b.username)
    theirs = await client.get(PAGE)
    missing = await client.get("/landlord/gateways/gw-nowhere/config")
    assert theirs.status == missing.status == 404
    add_gateway(sqlite_engine, "gw-b-old", w.building_b, revoked=True)
    html = await (await client.get("/landlord/gateways/gw-b-old/config")).text()
    assert "这台终端已停用" in html and "<textarea" not in html
    # An administrator sees any terminal.
    client.session.cookie_jar.clear()
    await login(client, w.admin.username)
    assert (await client.get(PAGE)).status == 200
    assert (await client.get("/landlord/gateways/gw-nowhere/config")).status == 404
