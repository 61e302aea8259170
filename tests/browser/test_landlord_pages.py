"""The landlord, declaration and overview pages in a real headless Chromium
at a phone's size: what a landlord taps and reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.sync_api import BrowserContext, Page, expect

from server.pages.masks import mask_card, mask_phone
from server.registry.idnumber import mask_id_number
from tests.browser.conftest import Site
from tests.browser.seed import DECLARANT_ID, SILENT_ID, TENANT_ID


def assert_fits_phone(page: Page) -> None:
    """No horizontal scrolling at 390 px. The phone's width is clientWidth:
    on a mobile viewport Chromium widens window.innerWidth to fit content
    that overflows, so comparing with innerWidth never fails."""
    width, inner = page.evaluate("[document.scrollingElement.scrollWidth, document.documentElement.clientWidth]")
    assert width <= inner, f"{page.url}: content is {width} px wide on a {inner} px screen"


def no_full_numbers(page: Page, *numbers: str) -> None:
    html = page.content()
    for number in numbers:
        assert number not in html, f"{page.url} shows a full identity number"


def test_landlord_registers_a_tenant_with_a_card_and_deregisters_them(site: Site, phone: BrowserContext) -> None:
    page = phone.new_page()
    site.login(page, "landlord-a")
    expect(page).to_have_url(site.url + "/landlord")
    assert_fits_phone(page)
    page.click("text=幸福楼")
    expect(page.locator("h1")).to_have_text("幸福楼")
    assert_fits_phone(page)
    page.click("table.units >> text=101")
    expect(page.locator("h1")).to_have_text("房号 101")
    assert_fits_phone(page)

    wrong = TENANT_ID[:17] + ("0" if TENANT_ID[17] != "0" else "1")
    page.fill("#f-id_number", wrong)
    page.fill("#f-name", "张三")
    page.fill("#f-arrived", "2024-03-01")
    page.click("form.register button[type=submit]")
    error = page.locator('.field-error[data-field="id_number"]')
    expect(error).to_have_text("身份证号码校验位错误")
    expect(page.locator("#f-id_number")).to_have_value("")  # never echoed back
    expect(page.locator("#f-name")).to_have_value("张三")
    no_full_numbers(page, wrong)

    page.fill("#f-id_number", TENANT_ID)
    page.fill("#f-phone", "13912345678")
    page.fill("#f-origin", "广东梅州")
    page.fill("#f-card", "0a1b2c3d4e")
    page.click("form.register button[type=submit]")
    occupant = page.locator(".occupant", has_text="张三")
    expect(occupant).to_be_visible()
    expect(occupant.locator(".id-masked")).to_have_text(mask_id_number(TENANT_ID))
    expect(occupant).to_contain_text(mask_card("0A1B2C3D4E"))
    expect(occupant).to_contain_text(mask_phone("13912345678"))
    expect(page.locator(".flash")).to_have_text("已登记")
    no_full_numbers(page, TENANT_ID)
    assert "0A1B2C3D4E" not in page.content()
    assert_fits_phone(page)

    occupant.locator("summary").click()
    occupant.locator("input[name=departed]").fill((datetime.now(UTC) - timedelta(days=1)).date().isoformat())
    occupant.locator("select[name=reason]").select_option("moved")
    occupant.locator("button.deregister").click()
    expect(page.locator(".flash")).to_have_text("已注销登记")
    expect(page.locator(".occupant")).to_have_count(0)
    expect(page.locator("text=暂无登记住户")).to_be_visible()


def plate_declare_path(site: Site, unit_id: int) -> str:
    """The self-declaration page a unit's door plate leads to (issued here)."""
    from server.db.engine import create_engine
    from server.plates.keys import load_keyring
    from server.plates.service import ensure_plates

    engine = create_engine(site.database_url)
    try:
        with engine.begin() as conn:
            token = ensure_plates(conn, datetime.now(UTC), load_keyring(None, site.database_url), [unit_id],
                                  valid_days=0, actor="test")[unit_id]
    finally:
        engine.dispose()
    return f"/p/{token}/declare"


def test_tenant_self_declares_and_the_landlord_confirms(site: Site, phone: BrowserContext) -> None:
    tenant = phone.new_page()
    tenant.goto(site.url + plate_declare_path(site, site.world.empty_unit_id))
    assert_fits_phone(tenant)
    tenant.fill("#f-id_number", DECLARANT_ID)
    tenant.fill("#f-name", "李四")
    tenant.fill("#f-phone", "13700001111")
    tenant.click("form.declare button[type=submit]")
    expect(tenant.locator(".waiting .state")).to_have_text("等待房东或网格员确认")
    tenant.context.clear_cookies()

    landlord = phone.new_page()
    site.login(landlord, "landlord-a")
    pending = landlord.locator(".building", has_text="幸福楼").locator(".pending")
    expect(pending).to_have_text("1")
    landlord.click("text=幸福楼")
    declaration = landlord.locator(".declaration", has_text="李四")
    expect(declaration).to_contain_text(mask_id_number(DECLARANT_ID))
    no_full_numbers(landlord, DECLARANT_ID, SILENT_ID)
    assert_fits_phone(landlord)
    declaration.locator("button.confirm").click()
    expect(landlord.locator(".flash")).to_have_text("已确认申报")
    expect(landlord.locator(".declaration")).to_have_count(0)
    landlord.click("table.units >> text=101")
    expect(landlord.locator(".occupant", has_text="李四")).to_contain_text("自主申报")


def test_landlord_answers_a_departure_prompt(site: Site, phone: BrowserContext) -> None:
    page = phone.new_page()
    site.login(page, "landlord-a")
    page.goto(f"{site.url}/landlord/buildings/{site.world.building_id}")
    prompt = page.locator(".departure")
    expect(prompt).to_contain_text("王五")
    assert_fits_phone(page)
    prompt.locator("button.living").click()
    expect(page.locator(".flash")).to_have_text("已记录您的回答")
    expect(page.locator(".departure")).to_have_count(0)
    expect(page.locator("text=没有需要回答的问题")).to_be_visible()


def test_overview_draws_the_rates_and_drills_down(site: Site, phone: BrowserContext) -> None:
    page = phone.new_page()
    site.login(page, "admin-1")
    expect(page).to_have_url(site.url + "/overview")
    assert_fits_phone(page)
    # One district: both registrations, one of them under a presumed-departure case.
    district = page.locator('.rate[data-rate="consistency"] g.bar[data-label="越秀区"]')
    expect(district).to_contain_text("50.0% (1/2)")
    expect(page.locator('.rate[data-rate="registration"] g.bar[data-label="越秀区"]')).to_contain_text("(2/2)")
    page.locator("nav.drill a", has_text="越秀区").click()
    page.locator("nav.drill a", has_text="北京街").click()
    # The bars are links too.
    page.locator('.rate[data-rate="registration"] svg a', has_text="盐运西社区").click()
    expect(page.locator("h1")).to_contain_text("盐运西社区")
    grid1 = page.locator('.rate[data-rate="consistency"] g.bar[data-label="一网格"]')
    expect(grid1).to_contain_text("0.0% (0/1)")
    expect(page.locator('.rate[data-rate="pledge"] g.bar[data-label="二网格"]')).to_contain_text("0.0% (0/1)")
    expect(page.locator('g.grade[data-grade="none"]')).to_have_attribute("data-count", "3")
    assert page.locator("svg").count() >= 5
    assert_fits_phone(page)


def test_english_is_one_tap_away_and_remembered(site: Site, phone: BrowserContext) -> None:
    page = phone.new_page()
    site.login(page, "landlord-a")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.click("a.lang")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_have_text("Buildings")
    page.click("text=幸福楼")
    expect(page.locator("h2", has_text="Has this tenant left?")).to_be_visible()
    page.click("table.units >> text=101")
    page.fill("#f-id_number", "123")
    page.fill("#f-name", "Zhang San")
    page.click("form.register button[type=submit]")
    expect(page.locator('.field-error[data-field="id_number"]')).to_have_text("an ID number has 18 characters")
    assert_fits_phone(page)
