"""Every page a landlord, a coordinator, a tenant or an administrator meets,
opened at 390×844 in Chinese and in English, after a scene like a demo's:
gateways that report starts, devices on a serial port under the data folder,
a tamper alarm, dropped events, simulated gateways that never connected,
swipes with cards, tenants with identity numbers and phones, a pending
declaration, a task, an overdue patrol, one day of rate history, door
terminals behind their gateway's list in every way (their gateway's error
texts carrying addresses and URLs).

Each page must fit the phone (no horizontal scrolling) and its visible text
(``document.body.innerText``) must hold nothing of the machine: no Python
values or reprs, no file paths, no internal ids, no ``key=value``; a Chinese
page no English state words. Adding a page is one line in PAGES."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext

from server.db.engine import create_engine
from server.db.models import gateways, units
from server.reconcile.rates import compute_rates, write_snapshots
from server.registry import service
from server.registry.idnumber import make_id_number
from server.rules import CityRules
from server.web.transactions import write_transaction
from tests.browser.conftest import PHONE, Site
from tests.browser.seed import (
    DOOR_TERMINALS,
    OTHER_ID,
    SCENE_CARD,
    SILENT_ID,
    seed_gateways,
    seed_terminal_gateways,
    vault_for,
)
from tests.browser.test_scan_pages import plate_urls
from tests.browser.test_task_pages import case_becomes_task

PENDING_ID = make_id_number("440111", date(1998, 7, 1), 321)
TENANT_PHONE = "13912345678"
# Words of the machine, found anywhere in a page's visible text.
INTERNAL = ("outbox_id", "outbox_first_seq", "online=", "/tmp/", "Traceback", "<object", "{'", "=True",
            "404: Not Found", "405: Method Not Allowed", "Errno", "· ·")
# Python's values as words (not inside other words: "Nonexistent" is fine).
PYTHON_WORDS = re.compile(r"\b(True|False|None)\b")
KEY_VALUE = re.compile(r"\b[a-z_]+=[^\s]")
# State words the Chinese pages have Chinese for.
ENGLISH_STATES = re.compile(r"\b(online|offline|unknown|granted|denied|revoked|open|closed|pending|overdue|never|"
                            r"reported|dispatched|handled|verified|archived|trusted|normal|watch|strict|forced|gateway|device)\b",
                            re.I)


@dataclass(frozen=True)
class Visit:
    """One page: who opens it (a role's phone, or "anyone" without a login),
    its path (``{name}`` filled from the scene), and the status it answers."""

    who: str
    path: str
    status: int = 200


PAGES = [
    Visit("anyone", "/login"),
    Visit("anyone", "/p/{token}"),
    Visit("anyone", "/p/{token}/declare"),
    Visit("anyone", "/p/{token}/declare?sent=1"),
    Visit("anyone", "/p/{token}/report"),
    Visit("anyone", "/p/not-a-plate", 404),
    Visit("anyone", "/nope", 404),
    Visit("anyone", "/logout", 405),
    Visit("landlord", "/landlord"),
    Visit("landlord", "/landlord/buildings/{building}"),
    Visit("landlord", "/landlord/buildings/{building}/terminals"),
    Visit("anyone", "/e/7777-7777-7777"),
    Visit("landlord", "/landlord/units/{silent_unit}"),
    Visit("landlord", "/landlord/units/{other_unit}", 404),  # another landlord's: as if it did not exist
    Visit("landlord", "/landlord/units/abc", 404),
    Visit("landlord", "/overview", 403),
    Visit("admin", "/"),
    Visit("admin", "/overview"),
    Visit("admin", "/overview?area=D1"),
    Visit("admin", "/overview?area=S1"),
    Visit("admin", "/overview?area=C1"),
    Visit("admin", "/overview?area=nowhere", 404),
    Visit("admin", "/landlord"),
    Visit("admin", "/landlord/buildings/{building}"),
    Visit("admin", "/landlord/units/{silent_unit}"),
    Visit("admin", "/landlord/units/999999", 404),
    Visit("admin", "/c"),
    Visit("admin", "/c/overdue"),
    Visit("admin", "/c/workload"),
    Visit("admin", "/c/plates"),
    Visit("admin", "/c/tasks/{task}"),
    Visit("admin", "/c/tasks/999999", 404),
    Visit("admin", "/declare/{silent_unit}", 404),
    Visit("coordinator", "/"),
    Visit("coordinator", "/c"),
    Visit("coordinator", "/c/units/{silent_unit}"),
    Visit("coordinator", "/c/units/{empty_unit}"),
    Visit("coordinator", "/c/units/{silent_unit}/patrol"),
    Visit("coordinator", "/c/units/{other_unit}", 404),  # another grid's: as if it did not exist
    Visit("coordinator", "/c/tasks/{task}"),
    Visit("coordinator", "/c/overdue"),
    Visit("police", "/police"),
    Visit("landlord", "/police", 403),
    Visit("landlord", "/fleet"),
    Visit("landlord", "/fleet?state=nope", 400),
    Visit("admin", "/fleet"),
    Visit("admin", "/fleet?state=offline&sort=name"),
    Visit("coordinator", "/fleet", 403),
    Visit("landlord", "/landlord/gateways/gw-main/config"),
    Visit("admin", "/landlord/gateways/gw-main/config"),
    Visit("coordinator", "/landlord/gateways/gw-main/config", 403),
]


def build_scene(site: Site, data_dir: str) -> dict[str, object]:
    """What the pages need beyond seed.py, made the way the server makes it."""
    world = site.world
    engine = create_engine(site.database_url)
    now = datetime.now(UTC)
    rules = CityRules()
    try:
        seed_gateways(engine, data_dir, now)
        # Gateways keeping door terminals' lists, one terminal in each state
        # the fleet page names (up to date, unreachable, refusing writes,
        # writes pending, an older list, never synced), and one gateway whose
        # terminals all hold its list.
        seed_terminal_gateways(engine, world.building_id, now)
        with write_transaction(engine) as conn:
            # The main gateway serves the scene's building: its camera alerts
            # show on the coordinator's unit page.
            conn.execute(gateways.update().where(gateways.c.id == "gw-main").values(building_id=world.building_id))
            # Its fleet health as a heartbeat leaves it: a camera without
            # frames (its detail a device path), a configuration rolled back.
            conn.execute(gateways.update().where(gateways.c.id == "gw-main").values(
                devices_health=[{"id": "1号线", "type": "reader", "state": "ok"},
                                {"id": "正门摄像头", "type": "camera", "state": "no_frames",
                                 "detail": f"{data_dir}/video0: no frames"}],
                disk_free_bytes=150 * 1024 * 1024, disk_total_bytes=8 * 1024 ** 3, mem_rss_bytes=70 * 1024 * 1024,
                mem_available_bytes=512 * 1024 * 1024, clock_skew_s=-2.5, config_version=1, config_attempted=2,
                config_state="rolled_back", config_error="健康检查失败：正门摄像头 30 秒没有画面"))
            vault = vault_for(site.database_url)
            service.register(conn, now, "test:scene", vault, unit_id=world.empty_unit_id, arrived_at=now,
                             source="landlord", credential=("em4100", SCENE_CARD),
                             person=service.PersonFields(make_id_number("440103", date(1992, 4, 4), 55), "陈七",
                                                         TENANT_PHONE, "广东梅州"))
            service.declare(conn, now, "tenant:test", vault, unit_id=world.silent_unit_id, arrived_at=now,
                            person=service.PersonFields(PENDING_ID, "李四", None, None))
            # Overdue by a day count with a fraction, as the schedule computes it.
            conn.execute(units.update().where(units.c.id == world.silent_unit_id)
                         .values(last_patrol_at=now - timedelta(days=400, hours=7)))
            # One day of history: the trend charts with a single point.
            write_snapshots(conn, rules, now, compute_rates(conn, rules, now))
    finally:
        engine.dispose()
    task = case_becomes_task(site)
    token = plate_urls(site, world.silent_unit_id)[world.silent_unit_id].rsplit("/", 1)[1]
    return {"building": world.building_id, "silent_unit": world.silent_unit_id, "empty_unit": world.empty_unit_id,
            "other_unit": world.other_unit_id, "task": task, "token": token}


def with_lang(path: str, lang: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}lang={lang}"


def problems_of(text: str, lang: str, secrets: tuple[str, ...]) -> list[str]:
    found = [f"shows {token!r}" for token in INTERNAL if token in text]
    found += [f"shows a secret or path {s!r}" for s in secrets if s in text]
    found += [f"shows Python's {m.group(0)!r}" for m in PYTHON_WORDS.finditer(text)]
    found += [f"shows key=value {m.group(0)!r}" for m in KEY_VALUE.finditer(text)]
    if lang == "zh":
        found += [f"Chinese page shows the English word {m.group(0)!r}" for m in ENGLISH_STATES.finditer(text)]
    return found


@pytest.fixture
def phones(browser: Browser, site: Site) -> Iterator[dict[str, BrowserContext]]:
    """A phone per role, each logged in once; "anyone" has no login. The
    browsers ask for English first: the pages must still answer in Chinese."""
    contexts = {}
    try:
        for who, username in (("anyone", None), ("landlord", site.world.landlord.username),
                              ("admin", site.world.admin.username),
                              ("coordinator", site.world.coordinator.username),
                              ("police", site.world.police.username)):
            context = browser.new_context(**{**PHONE, "locale": "en-US"})  # type: ignore[arg-type]
            context.set_default_timeout(10_000)
            contexts[who] = context
            if username is not None:
                site.login(context.new_page(), username)
        yield contexts
    finally:
        for context in contexts.values():
            context.close()


def test_every_page_fits_a_phone_and_speaks_to_people(site: Site, phones: dict[str, BrowserContext]) -> None:
    data_dir = str(Path(urlsplit(site.database_url).path.lstrip("/")).parent)
    assert data_dir.startswith("/tmp/") or data_dir  # the data folder, as a demo's
    names = build_scene(site, data_dir)
    # The door terminals' error texts are the gateway's, for its log: an address, a URL, protocol codes.
    secrets = (data_dir, SILENT_ID, OTHER_ID, PENDING_ID, SCENE_CARD, TENANT_PHONE, "ob-7f3a9c", "192.168.1.64",
               "ISAPI", "statusCode", "no allowlist yet")
    tabs = {who: context.new_page() for who, context in phones.items()}
    failures: list[str] = []
    for visit in PAGES:
        path = visit.path.format(**names)
        for lang in ("zh", "en"):
            tab = tabs[visit.who]
            response = tab.goto(site.url + with_lang(path, lang))
            assert response is not None
            # One round trip: the status page refreshes itself every 5 s.
            # The phone's width is clientWidth: on a mobile viewport Chromium
            # widens window.innerWidth to fit content that overflows, so
            # scrollWidth <= innerWidth would always hold.
            text, width, inner, html_lang = tab.evaluate(
                "[document.body.innerText, document.documentElement.scrollWidth,"
                " document.documentElement.clientWidth, document.documentElement.lang]")
            where = f"{visit.who} {with_lang(path, lang)}"
            if response.status != visit.status:
                failures.append(f"{where}: answered {response.status}, not {visit.status}")
            if width > inner:
                failures.append(f"{where}: {width} px wide on a {inner} px screen")
            if html_lang != ("zh-CN" if lang == "zh" else "en"):
                failures.append(f"{where}: page language {html_lang!r}")
            failures += [f"{where}: {p}" for p in problems_of(text, lang, secrets)]
    assert not failures, "\n".join(failures)
    # The checks above covered the camera section with alerts in it (seed.py).
    tabs["coordinator"].goto(site.url + f"/c/units/{names['silent_unit']}?lang=zh")
    text = tabs["coordinator"].evaluate("document.body.innerText")
    assert "门口摄像头" in text and "尾随进入" in text and "身份不明进入" in text, text
    # ... and the fleet page with a line for each door terminal behind its
    # gateway's list and for those holding it, for both who may open it.
    for who in ("admin", "landlord"):
        for lang, words in (("zh", ("终端 后门人脸机：", "终端 新装终端：", "其余 1 台", "门禁终端 2 台均已是最新名单")),
                            ("en", ("terminal 后门人脸机:", "terminal 新装终端:", "the other one",
                                    "the 2 door terminals all hold"))):
            tabs[who].goto(site.url + f"/fleet?lang={lang}")
            text = tabs[who].evaluate("document.body.innerText")
            behind = [str(t["id"]) for t in DOOR_TERMINALS if t["id"] != "正门人脸机"]
            assert all(name in text for name in behind), (who, lang, text)
            assert all(w in text for w in words), (who, lang, text)
    # ... and the building's own terminals page, where the landlord installs them.
    tabs["landlord"].goto(site.url + f"/landlord/buildings/{names['building']}/terminals?lang=zh")
    text = tabs["landlord"].evaluate("document.body.innerText")
    assert "终端 后门人脸机：" in text and "门禁终端 2 台均已是最新名单" in text, text

def test_pages_are_chinese_without_asking_even_on_an_english_phone(site: Site,
                                                                   phones: dict[str, BrowserContext]) -> None:
    for who, path in (("anyone", "/login"), ("anyone", "/nope"), ("admin", "/"), ("admin", "/overview"),
                      ("landlord", "/landlord")):
        tab = phones[who].new_page()
        tab.goto(site.url + path)
        assert tab.evaluate("document.documentElement.lang") == "zh-CN", path
    tab = phones["admin"].new_page()
    tab.goto(site.url + "/overview?lang=en")
    tab.goto(site.url + "/")  # the choice is remembered
    assert tab.evaluate("document.documentElement.lang") == "en"
