"""A grid task through its six steps in a real headless Chromium at a
phone's size: reconciliation opens a case, the sweep makes it a task, the
coordinator sees it on /c, an administrator (on a second phone) dispatches
it, the coordinator records the handling, the administrator verifies
(four-eyes: not the coordinator's to check), evaluates and archives, and
the trail shows every step."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from playwright.sync_api import Browser, BrowserContext, Page, expect

from server.db.engine import create_engine
from server.db.models import cases, tasks
from server.grid.case_tasks import create_case_tasks
from server.rules import CityRules
from server.web.transactions import write_transaction
from tests.browser.conftest import PHONE, Site
from tests.browser.test_landlord_pages import assert_fits_phone


def case_becomes_task(site: Site) -> int:
    """What a sweep does for an overcrowded unit: a case, then its task."""
    engine = create_engine(site.database_url)
    now = datetime.now(UTC)
    try:
        with write_transaction(engine) as conn:
            conn.execute(sa.insert(cases).values(
                kind="overcrowding", subject=f"u{site.world.empty_unit_id}", state="open",
                building_id=site.world.building_id, unit_id=site.world.empty_unit_id,
                evidence={"occupants": 7, "capacity": 4}, opened_at=now, updated_at=now))
            assert create_case_tasks(conn, now, CityRules()) == 1
            return int(conn.execute(sa.select(tasks.c.id).where(tasks.c.kind == "overcrowding")).scalar_one())
    finally:
        engine.dispose()


def open_task(page: Page, site: Site, task_id: int) -> None:
    page.goto(f"{site.url}/c/tasks/{task_id}")
    expect(page.locator("h1")).to_have_text(f"工单 #{task_id}")


def current_step(page: Page, step: str, label: str) -> None:
    current = page.locator("ol.steps li.current")
    expect(current).to_have_attribute("data-step", step)
    expect(current).to_have_text(label)


def test_a_task_from_a_case_runs_all_six_steps(site: Site, phone: BrowserContext, browser: Browser) -> None:
    task_id = case_becomes_task(site)
    coordinator = phone.new_page()
    site.login(coordinator, "coord-1")
    coordinator.click("header.top >> text=网格工作")
    expect(coordinator).to_have_url(site.url + "/c")
    card = coordinator.locator(f'section.to-claim .card[data-task="{task_id}"]')
    expect(card).to_contain_text("超员（群租）")
    expect(card).to_contain_text("幸福楼 101")
    assert_fits_phone(coordinator)
    card.locator("a").click()
    current_step(coordinator, "reported", "上报")
    expect(coordinator.locator("#unit-link")).to_have_attribute("href", f"/c/units/{site.world.empty_unit_id}")
    expect(coordinator.locator('form[data-action="dispatch"]')).to_have_count(0)
    assert_fits_phone(coordinator)

    admin_phone = browser.new_context(**PHONE)  # type: ignore[arg-type]
    admin_phone.set_default_timeout(10_000)
    try:
        admin = admin_phone.new_page()
        site.login(admin, "admin-1")
        admin.goto(site.url + "/c")
        dispatch = admin.locator(f'section.dispatch .card[data-task="{task_id}"]')
        dispatch.locator("select[name=assignee_user_id]").select_option(label="coord-1")
        dispatch.locator("button[type=submit]").click()
        expect(admin.locator(".flash")).to_have_text("已派遣")
        assert_fits_phone(admin)

        coordinator.goto(site.url + "/c")
        coordinator.locator(f'section.mine .card[data-task="{task_id}"] a').click()
        current_step(coordinator, "dispatched", "派遣")
        coordinator.click('form[data-action="handle"] button')  # empty note: the browser's own check stops it
        current_step(coordinator, "dispatched", "派遣")
        coordinator.fill("#note-handle", "现场核实：住7人，已要求房东两周内整改")
        coordinator.click('form[data-action="handle"] button')
        expect(coordinator.locator(".flash")).to_have_text("已提交处置")
        current_step(coordinator, "handled", "处置")
        expect(coordinator.locator("#actions")).to_contain_text("当前没有您可执行的操作")  # four-eyes

        open_task(admin, site, task_id)
        admin.fill("#note-verify", "回访确认已整改")
        admin.click('form[data-action="verify"] button')
        expect(admin.locator(".flash")).to_have_text("已核查通过")
        current_step(admin, "verified", "核查")
        admin.locator('form[data-action="evaluate"] input[value="good"]').check()
        admin.fill("#note-evaluate", "处置及时")
        admin.click('form[data-action="evaluate"] button')
        expect(admin.locator(".flash")).to_have_text("已评价")
        admin.click('form[data-action="archive"] button')
        expect(admin.locator(".flash")).to_have_text("已归档")
    finally:
        admin_phone.close()

    open_task(coordinator, site, task_id)
    current_step(coordinator, "archived", "归档")
    expect(coordinator.locator("ol.steps li.done")).to_have_count(5)
    trail = coordinator.locator("ol.trail > li")
    expect(trail).to_have_count(6)
    assert [trail.nth(i).get_attribute("data-action") for i in range(6)] == [
        "reported", "dispatch", "handle", "verify", "evaluate", "archive"]
    expect(trail.nth(1)).to_contain_text("coord-1")
    expect(trail.nth(2)).to_contain_text("现场核实：住7人")
    expect(trail.nth(4)).to_contain_text("处置及时")
    expect(coordinator.locator(".card").first).to_contain_text("好 · 处置及时")
    assert_fits_phone(coordinator)
    coordinator.goto(f"{site.url}/c/tasks/{task_id}?lang=en")
    expect(coordinator.locator("ol.steps li.current")).to_have_text("Archived")
