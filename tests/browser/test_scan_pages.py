"""The plate pages in a real headless Chromium at a phone's size: a tenant
scans a plate and declares (an invalid number first), a coordinator scans
the same kind of plate, lands on the unit page and records a patrol."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from PIL import Image
from playwright.sync_api import BrowserContext, expect

from server.db.engine import create_engine
from server.db.models import areas, grid_coordinators
from server.plates.keys import load_keyring
from server.plates.service import ensure_plates
from server.registry.idnumber import mask_id_number
from tests.browser.conftest import Site
from tests.browser.seed import DECLARANT_ID, SILENT_ID
from tests.browser.test_landlord_pages import assert_fits_phone, no_full_numbers
from tests.server.auth_helpers import make_user


def plate_urls(site: Site, *unit_ids: int) -> dict[int, str]:
    engine = create_engine(site.database_url)
    try:
        with engine.begin() as conn:
            tokens = ensure_plates(conn, datetime.now(UTC), load_keyring(None, site.database_url), unit_ids,
                                   valid_days=1826, actor="test")
    finally:
        engine.dispose()
    return {unit_id: f"{site.url}/p/{token}" for unit_id, token in tokens.items()}


def coordinator_of_grid_1(site: Site) -> str:
    engine = create_engine(site.database_url)
    try:
        user = make_user(engine, "coordinator", "coord-scan")
        with engine.begin() as conn:
            grid = conn.execute(sa.select(areas.c.id).where(areas.c.code == "G1")).scalar_one()
            conn.execute(sa.insert(grid_coordinators).values(grid_id=grid, user_id=user.id,
                                                             assigned_at=datetime.now(UTC), assigned_by="test"))
    finally:
        engine.dispose()
    return user.username


def test_tenant_scans_a_plate_and_declares(site: Site, phone: BrowserContext) -> None:
    url = plate_urls(site, site.world.silent_unit_id)[site.world.silent_unit_id]
    page = phone.new_page()
    page.goto(url)
    expect(page.locator(".address")).to_have_text("北京街12号 102")
    expect(page.locator(".grade-banner")).to_be_visible()
    assert "王五" not in page.content()  # the registered tenant is never shown
    no_full_numbers(page, SILENT_ID)
    assert_fits_phone(page)

    page.click("a.declare-link")
    expect(page.locator("h1")).to_contain_text("住户自主申报")
    wrong = DECLARANT_ID[:17] + ("0" if DECLARANT_ID[17] != "0" else "1")
    page.fill("#f-id_number", wrong)
    page.fill("#f-name", "李四")
    page.click("form.declare button[type=submit]")
    expect(page.locator(".field-error[data-field=id_number]")).to_have_text("身份证号码校验位错误")
    expect(page.locator("#f-name")).to_have_value("李四")
    assert wrong not in page.content()
    assert_fits_phone(page)
    page.fill("#f-id_number", DECLARANT_ID)
    page.click("form.declare button[type=submit]")
    expect(page.locator(".waiting .state")).to_have_text("等待房东或网格员确认")
    no_full_numbers(page, DECLARANT_ID)


def test_coordinator_scans_a_plate_and_records_a_patrol(site: Site, phone: BrowserContext, tmp_path: Path) -> None:
    unit_id = site.world.silent_unit_id
    url = plate_urls(site, unit_id)[unit_id]
    username = coordinator_of_grid_1(site)
    photo = tmp_path / "hallway.jpg"
    Image.new("RGB", (800, 600), (120, 120, 120)).save(photo, "JPEG")

    page = phone.new_page()
    site.login(page, username)
    page.goto(url)
    expect(page).to_have_url(f"{site.url}/c/units/{unit_id}")
    expect(page.locator(".occupant", has_text="王五")).to_contain_text(mask_id_number(SILENT_ID))
    no_full_numbers(page, SILENT_ID)
    assert_fits_phone(page)

    page.click("a.record-patrol")
    expect(page.locator("h1")).to_contain_text("记录巡查")
    assert_fits_phone(page)
    page.fill("#f-occupants_observed", "2")
    page.locator(".seen label", has_text="王五").click()
    page.locator("[data-item=fire_safety] label", has_text="有问题").click()
    page.locator("[data-item=pledge] label", has_text="不适用").click()
    page.fill("#f-notes", "楼道有电动车充电")
    page.set_input_files("#f-photos", str(photo))
    page.click("button.save-patrol")

    expect(page).to_have_url(f"{site.url}/c/units/{unit_id}?ok=patrol_ok")
    expect(page.locator(".flash")).to_have_text("巡查已记录")
    patrol = page.locator(".patrol").first
    expect(patrol).to_contain_text("楼道有电动车充电")
    expect(patrol.locator(".check-fire_safety")).to_have_attribute("data-value", "problem")
    expect(patrol.locator(".check-pledge")).to_have_attribute("data-value", "n/a")
    expect(patrol.locator(".photos img")).to_have_count(1)
    assert patrol.locator(".photos img").evaluate("img => img.naturalWidth") == 800  # served to the coordinator
    expect(page.locator(".task", has_text="巡查发现：消防安全")).to_be_visible()
    assert_fits_phone(page)
    src = patrol.locator(".photos img").get_attribute("src") or ""
    image = Image.open(io.BytesIO(page.request.get(site.url + src).body()))
    assert image.format == "JPEG"
