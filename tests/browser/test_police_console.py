"""An officer's look-ups on the console (/police) on a phone: the form
filled in by hand, the answer in Chinese, masked, at 390 px."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, expect

from server.registry.idnumber import mask_id_number
from tests.browser.conftest import Site
from tests.browser.seed import SILENT_ID
from tests.browser.test_every_page import problems_of


def _fits(page: object) -> bool:
    width, inner = page.evaluate(  # type: ignore[attr-defined]
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    return bool(width <= inner)


def test_an_officer_checks_a_person_and_an_address_on_a_phone(site: Site, phone: BrowserContext) -> None:
    page = phone.new_page()
    site.login(page, site.world.police.username)
    expect(page).to_have_url(site.url + "/police")
    person = page.locator("form.police-person")
    person.locator("select[name=purpose]").select_option("residence_verification")
    person.locator("input[name=legal_basis]").fill("《居住证暂行条例》第八条")
    person.locator("input[name=case_ref]").fill("HC-2026-7")
    person.locator("input[name=badge]").fill("012345")
    person.locator("input[name=id_number]").fill(SILENT_ID)
    person.locator("button[type=submit]").click()
    result = page.locator("section.police-result")
    expect(result.locator("[data-result]")).to_have_attribute("data-result", "registered")
    expect(result).to_contain_text("已在本地登记居住")
    expect(result).to_contain_text("北京街12号 102")
    expect(result).to_contain_text(mask_id_number(SILENT_ID))
    text = page.evaluate("document.body.innerText")
    assert SILENT_ID not in text and _fits(page)
    assert problems_of(text, "zh", (SILENT_ID,)) == []
    # The purpose stays filled in for the next look-up: an address now.
    address = page.locator("form.police-address")
    expect(address.locator("input[name=case_ref]")).to_have_value("HC-2026-7")
    address.locator("select[name=purpose]").select_option("rental_inspection")
    address.locator("input[name=building_code]").fill("no-such-code")
    address.locator("button[type=submit]").click()
    expect(page.locator("form.police-address [data-field=building_code]")).to_contain_text("没有这个地址编码")
    assert _fits(page)
