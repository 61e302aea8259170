"""A city administrator opens the fleet page on a phone (390×844, headless
Chromium) and looks at the face and card terminals whose user lists a door
gateway keeps (docs/fleet-health.md, "Door terminals that decide for
themselves"): the gateway with terminals behind its list needs attention,
each of those says in plain words what is wrong, the one holding the list is
said to hold it with its version, and a gateway whose terminals all hold it
says so; nothing is wider than the phone, in Chinese and in English; the
gateway's own error texts (an address, a URL, protocol codes) and each
terminal's device entry ("offline" even when it answers) stay off the page.

Screenshots of the page and of the gateway's card are left in the test's
temporary folder (pytest --basetemp=DIR to keep them somewhere known)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from server.db.engine import create_engine
from tests.browser.conftest import Site
from tests.browser.seed import DOOR_TERMINALS, DOORS_ALLOWLIST, SYNCED_TERMINALS, seed_terminal_gateways
from tests.browser.test_every_page import ENGLISH_STATES, PYTHON_WORDS
from tests.browser.test_landlord_pages import assert_fits_phone


@dataclass(frozen=True)
class Words:
    """What the administrator must read: the two gateways' states, the door
    gateway's terminal lines in order, the other's one line, the devices
    other than terminals, and the device state the terminals must not show."""

    degraded: str
    online: str
    lines: tuple[str, ...]
    all_ok: str
    devices: str
    offline: str


WORDS = {
    "zh": Words("有故障", "正常", (
        "门禁终端 6 台中有 5 台没有最新名单：",
        "终端 后门人脸机：连不上，已注销的人可能仍能开门",
        "终端 车库刷卡机：拒绝写入 3 次，已注销的人可能仍能开门",
        "终端 侧门人脸机：正在同步，还有 5 项",
        f"终端 天台门禁：名单不是最新（版本 {DOORS_ALLOWLIST - 2}，应为 {DOORS_ALLOWLIST}）",
        "终端 新装终端：尚未同步过名单",
        f"其余 1 台已是最新名单（版本 {DOORS_ALLOWLIST}）",
        "终端 正门人脸机：时钟慢了 2 小时，请校准时间，否则会按错的时间判断有效期"),
        f"门禁终端 2 台均已是最新名单（版本 {DOORS_ALLOWLIST}）", "全部正常（1 台）", "离线"),
    "en": Words("degraded", "online", (
        "5 of 6 door terminals do not hold the current list:",
        "terminal 后门人脸机: unreachable, so someone deregistered may still get in",
        "terminal 车库刷卡机: refused 3 writes, so someone deregistered may still get in",
        "terminal 侧门人脸机: updating, 5 changes to go",
        f"terminal 天台门禁: holds an old list (version {DOORS_ALLOWLIST - 2}, current {DOORS_ALLOWLIST})",
        "terminal 新装终端: has never received the list",
        f"the other one holds the current list (version {DOORS_ALLOWLIST})",
        "terminal 正门人脸机: its clock is 2 h slow; set it, or it checks validity against the wrong time"),
        f"the 2 door terminals all hold the current list (version {DOORS_ALLOWLIST})", "all working (1)",
        "not answering"),
}
# The gateway's texts for its log, and its device entries for the terminals.
NOT_FOR_PEOPLE = ("192.168.1.64", "ISAPI", "statusCode", "deviceUser", "no allowlist yet", "hikvision",
                  "holds allowlist version", "http")
# Names the scene gives things in Chinese, whatever the page's language.
NAMES = ("幸福楼", "1号读卡器", *(str(t["id"]) for t in (*DOOR_TERMINALS, *SYNCED_TERMINALS)))
CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")


def _scene(site: Site) -> None:
    engine = create_engine(site.database_url)
    try:
        seed_terminal_gateways(engine, site.world.building_id)
    finally:
        engine.dispose()


def _nothing_wider_than_the_phone(page: Page) -> None:
    """The page, and inside it the table's own scrolling box (a wide screen
    may scroll the table sideways, a phone must not need to) and every line."""
    assert_fits_phone(page)
    wide = page.evaluate("""() => {
        const out = [];
        const wrap = document.querySelector('.fleet-wrap');
        if (wrap.scrollWidth > wrap.clientWidth) out.push(`table ${wrap.scrollWidth} > ${wrap.clientWidth}`);
        const screen = document.documentElement.clientWidth;
        for (const el of document.querySelectorAll('tr.gateway td, tr.gateway li, .door-terminals .line')) {
            const box = el.getBoundingClientRect();
            if (box.right > screen + 0.5 || el.scrollWidth > el.clientWidth + 1)
                out.push(`${el.className || el.tagName}: ${el.innerText.slice(0, 40)} ends at ${box.right}`);
        }
        return out;
    }""")
    assert not wide, wide


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_an_administrator_sees_which_door_terminals_are_behind_on_a_phone(
        site: Site, phone: BrowserContext, tmp_path: Path, lang: str) -> None:
    _scene(site)
    w = WORDS[lang]
    page = phone.new_page()
    site.login(page, site.world.admin.username)
    page.goto(f"{site.url}/fleet?lang={lang}")
    assert page.viewport_size == {"width": 390, "height": 844}
    assert page.evaluate("document.documentElement.lang") == ("zh-CN" if lang == "zh" else "en")
    page.screenshot(path=str(tmp_path / f"fleet-{lang}.png"), full_page=True)
    doors = page.locator('tr.gateway[data-gateway="gw-doors"]')
    doors.screenshot(path=str(tmp_path / f"fleet-{lang}-gw-doors.png"))
    _nothing_wider_than_the_phone(page)

    # The gateway needs attention: degraded, and its terminals' lines marked.
    expect(doors).to_have_attribute("data-state", "degraded")
    expect(doors.locator("td.state .chip")).to_have_text(w.degraded)
    block = doors.locator(".door-terminals.attention")
    expect(block).to_be_visible()
    border = block.evaluate("el => getComputedStyle(el).borderLeftColor")
    assert border == "rgb(249, 171, 0)", border  # the colour of the "degraded" chip
    # Each terminal behind, with why, in the gateway's order; then the one holding the list.
    lines = [" ".join(line.split()) for line in block.inner_text().splitlines() if line.strip()]
    assert lines == list(w.lines), lines
    card = doors.inner_text()
    # The phone card's labels, with the language's own colon ("Devices: ", "设备：").
    label = doors.locator("td.devices").evaluate("el => getComputedStyle(el, '::before').content")
    assert label == ('"设备："' if lang == "zh" else '"Devices: "'), label
    # The terminals are not also listed as "offline" devices (the reader is the one other device).
    assert w.devices in card, card
    assert w.offline not in card, card
    assert card.count("正门人脸机") == 1, "only its clock line: it holds the list"

    fine = page.locator('tr.gateway[data-gateway="gw-doors-ok"]')
    expect(fine).to_have_attribute("data-state", "online")
    expect(fine.locator("td.state .chip")).to_have_text(w.online)
    assert fine.locator(".door-terminals.attention").count() == 0
    expect(fine.locator(".door-terminals")).to_have_text(w.all_ok)

    text = page.evaluate("document.body.innerText")
    assert not [word for word in NOT_FOR_PEOPLE if word in text], text
    assert not PYTHON_WORDS.search(text), text
    if lang == "zh":
        assert not ENGLISH_STATES.search(text), text
    else:
        # English throughout, but for the names the landlord gave things.
        for name in NAMES:
            card = card.replace(name, "")
        assert not CJK.search(card), card
