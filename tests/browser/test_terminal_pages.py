"""A landlord installs a terminal from a phone (390 px, headless Chromium),
in Chinese and in English: from the building's page to its terminals, "add
a terminal" shows the code in large type, its QR and the command to type;
a gateway redeems the code through the real API; when its status is stored
as online the page says so by itself, without a reload. Then the landlord
stops the terminal after a confirmation step."""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from playwright.sync_api import BrowserContext, Page, expect

from rentgate import wire
from server.db.engine import create_engine
from server.db.models import gateways
from tests.browser.conftest import Site
from tests.browser.test_landlord_pages import assert_fits_phone
from tests.server.fleet.enrol_helpers import CODE, csr_pem

WORDS = {
    "zh": {"link": "终端（门禁网关）", "add": "添加终端", "waiting": "等待终端连接……", "enrolled": "终端已登记，正在连接……",
           "online": "已连接", "title": "终端", "state_online": "在线", "stop": "停用此终端", "confirm": "确认停用",
           "stopped": "终端已停用。", "state_stopped": "已停用", "left": "还剩 10 分钟有效"},
    "en": {"link": "Terminals (door gateways)", "add": "Add a terminal", "waiting": "Waiting for the terminal…",
           "enrolled": "Terminal installed, connecting…", "online": "Online", "title": "Terminals",
           "state_online": "online", "stop": "Stop this terminal", "confirm": "Yes, stop it",
           "stopped": "The terminal was stopped.", "state_stopped": "stopped", "left": "valid for 10 more minutes"},
}
# Words of the machine that must not show (the command itself is excepted).
INTERNAL = re.compile(r"\b(True|False|None|null|undefined|NaN)\b|Traceback|\{'|=True")


def _redeem(site: Site, code: str) -> wire.EnrolResponse:
    """What `rentgate gateway enroll` does over HTTP."""
    body = json.dumps({"code": code, "csr": csr_pem()[0], "hostname": "tangxia-door"}).encode()
    request = urllib.request.Request(site.url + "/api/v1/enrol", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return wire.decode_enrol_response(response.read())


def _report_online(site: Site, gateway_id: str) -> None:
    """As ingest stores a gateway's first "online" status."""
    engine = create_engine(site.database_url)
    try:
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(sa.update(gateways).where(gateways.c.id == gateway_id).values(
                online=True, status_at=now, last_seen=now, devices_online=2, devices_total=2))
    finally:
        engine.dispose()


def _visible_text_is_for_people(page: Page) -> None:
    text = page.evaluate("document.body.innerText")
    command = page.evaluate("(document.getElementById('enrol-command') || {}).innerText || ''")
    found = INTERNAL.search(text.replace(command, ""))
    assert found is None, f"{page.url} shows {found.group()!r}"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_landlord_adds_a_terminal_and_sees_it_come_online_without_reloading(
        site: Site, phone: BrowserContext, lang: str) -> None:
    w = WORDS[lang]
    page = phone.new_page()
    site.login(page, "landlord-a", path="/login" + ("?lang=en" if lang == "en" else ""))
    page.goto(f"{site.url}/landlord/buildings/{site.world.building_id}")
    page.click(f"a.terminals >> text={w['link']}")
    expect(page.locator("h1")).to_have_text(w["title"])
    assert_fits_phone(page)
    _visible_text_is_for_people(page)

    page.click(f"form.add-terminal button >> text={w['add']}")
    code = page.locator("#enrol-code").inner_text()
    assert CODE.fullmatch(code), code
    # Large type, all of it on the phone's screen.
    size = float(page.evaluate("parseFloat(getComputedStyle(document.getElementById('enrol-code')).fontSize)"))
    assert size >= 28
    expect(page.locator(".qr svg")).to_be_visible()
    box = page.locator(".qr svg").bounding_box()
    assert box is not None and 150 <= box["width"] <= 390
    expect(page.locator("#enrol-left")).to_have_text(w["left"])
    expect(page.locator("#enrol-command")).to_have_text(
        f"rentgate gateway enroll {code} --server http://127.0.0.1:8080")
    expect(page.locator("#enrol-status")).to_have_text(w["waiting"])
    assert_fits_phone(page)
    _visible_text_is_for_people(page)
    page.evaluate("window.__same_page = true")  # gone if the page reloads

    answer = _redeem(site, code)
    expect(page.locator("#enrol-status")).to_have_text(w["enrolled"], timeout=15_000)
    _report_online(site, answer.gw)
    expect(page.locator("#enrol-status")).to_have_text(w["online"], timeout=15_000)
    expect(page.locator("#enrol-status")).to_have_attribute("data-state", "online")
    assert page.evaluate("window.__same_page") is True
    assert_fits_phone(page)

    # The terminals list: the new one online, with its devices; then stop it.
    page.click(f"a >> text={'返回终端列表' if lang == 'zh' else 'Back to the terminals'}")
    terminal = page.locator(".card.terminal", has_text="tangxia-door")
    expect(terminal.locator(".state")).to_have_text(w["state_online"])
    expect(terminal).to_contain_text("2/2")
    assert_fits_phone(page)
    _visible_text_is_for_people(page)
    confirm = terminal.locator("button.stop-confirm")
    expect(confirm).to_be_hidden()  # the first tap only opens the confirmation
    terminal.locator(f"summary >> text={w['stop']}").click()
    expect(confirm).to_have_text(w["confirm"])
    confirm.click()
    expect(page.locator(".flash")).to_have_text(w["stopped"])
    stopped = page.locator(".card.terminal", has_text="tangxia-door")
    expect(stopped.locator(".state")).to_have_text(w["state_stopped"])
    expect(stopped.locator("button.stop-confirm")).to_have_count(0)


def test_another_landlord_cannot_open_the_terminals_page(site: Site, phone: BrowserContext) -> None:
    page = phone.new_page()
    site.login(page, "landlord-b")
    theirs = page.goto(f"{site.url}/landlord/buildings/{site.world.building_id}/terminals")
    missing = page.goto(f"{site.url}/landlord/buildings/{2**40}/terminals")
    assert theirs is not None and missing is not None
    assert theirs.status == missing.status == 404
