"""``rentgate demo``: the one-command demo really works end to end, tells a
story that is true today, and never deletes what is not its own.

The OSDP demo runs once for the module, with the defaults a newcomer gets
(a district of eight buildings over the last 90 days); afterwards the pages
and the API are read, on the demo's own database, for the figures the demo
printed: the same rates, the same open cases, the same grades on the plates
as on the pages, a district that ends today."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from firmware_sim.district.patrols import LATE_DAYS_MAX
from rentgate.demo import GATEWAY_ID
from rentgate.demo_dir import MARK
from rentgate.demo_osdp import BUILDING_ADDRESS, BUILDING_NAME, DOORS, LINE, TENANT_CARDS, UNITS
from rentgate.lang import LANG_ENV
from server.app import make_app
from server.db.engine import create_engine
from server.db.models import events
from server.rules import CityRules
from server.settings import ServerSettings
from tests.fontless import BUNDLED_FACE, embedded_font_names, fontless, fonts_listed, unshare_refusal
from tests.server.auth_helpers import bearer, make_user

Client = TestClient[web.Request, web.Application]
ROOT = Path(__file__).resolve().parents[1]
ZONE = CityRules().zone
GRADE_WORDS = {"trusted": "放心", "normal": "一般", "watch": "重点", "strict": "严控"}


def demo(data_dir: Path, *args: str, timeout: float = 240,
         without_fonts: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """``rentgate demo --json``; with ``without_fonts`` (a work folder) on a
    machine with no CJK font at all (tests/fontless.py)."""
    command = [sys.executable, "-m", "rentgate", "demo", "--json", "--data-dir", str(data_dir), "--http-port", "0",
               *args]
    # The demo's own default language, whatever this process was told.
    env = {k: v for k, v in os.environ.items() if k != LANG_ENV}
    if without_fonts is not None:
        command, env = fontless(command, without_fonts)
        env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(command, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env, cwd=ROOT)


def run_demo(data_dir: Path, *args: str, without_fonts: Path | None = None) -> tuple[dict[str, Any], str]:
    """The demo's JSON result and what it told the person watching (stderr)."""
    proc = demo(data_dir, *args, without_fonts=without_fonts)
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                     for p in sorted((data_dir / "logs").glob("*.log")))
    assert proc.returncode == 0, (proc.stdout.decode(errors="replace")[-2000:] + proc.stderr.decode(errors="replace")[-3000:]
                                  + logs)
    result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return result, proc.stderr.decode()


def visible_text(html: str) -> str:
    html = re.sub(r"<(style|script)>.*?</\1>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_headless_em4100_demo_stores_every_swipe_once(tmp_path: Path) -> None:
    result, _ = run_demo(tmp_path / "demo", "--readers", "em4100", "--duration", "8", "--rate-per-min", "120",
                         "--district-buildings", "0")
    assert "district" not in result
    assert result["events_generated"] > 0, result
    assert result["events_stored"] == result["events_generated"], result
    assert result["lost"] == 0 and result["duplicates"] == 0, result


# ---------------------------------------------------------------------- the data folder


def test_a_folder_the_demo_did_not_make_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "notes.txt").write_text("mine")
    (home / "photos" / "a.jpg").write_bytes(b"\xff\xd8")
    before = sorted(p.relative_to(home) for p in home.rglob("*"))

    proc = demo(home, "--duration", "1", "--district-buildings", "0", timeout=60)

    assert proc.returncode == 1
    said = proc.stderr.decode()
    assert "不是演示创建的文件夹" in said and "--data-dir" in said, said
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == before
    assert (home / "notes.txt").read_text() == "mine"


def test_a_file_or_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("mine")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / MARK).write_text("")  # marked, but reached through a link
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    for name in ("file", "link"):
        proc = demo(tmp_path / name, "--duration", "1", "--district-buildings", "0", "--json", timeout=60)
        assert proc.returncode == 1, name
        assert "error" in json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert (tmp_path / "file").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == [MARK]


@pytest.mark.parametrize("args", [("--duration", "0"), ("--district-days", "0"), ("--http-port", "70000"),
                                  ("--district-buildings", "-1"), ("--rate-per-min", "-5")])
def test_impossible_numbers_are_refused_before_anything_starts(tmp_path: Path, args: tuple[str, str]) -> None:
    proc = demo(tmp_path / "demo", *args, timeout=60)
    assert proc.returncode == 2
    assert f"{args[0]} 应在" in proc.stderr.decode()
    assert not (tmp_path / "demo").exists()  # nothing made


def test_english_on_request(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "keep").write_text("")
    proc = subprocess.run([sys.executable, "-m", "rentgate", "--lang", "en", "demo", "--data-dir", str(home)],
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert "was not made by the demo" in proc.stderr.decode()


# ---------------------------------------------------------------------- the default demo and its story


@dataclass
class DemoRun:
    data_dir: Path
    result: dict[str, Any]
    said: str
    started_at: datetime
    finished_at: datetime
    token: str  # an administrator's, for reading the pages afterwards
    fonts_listed: str | None  # what fontconfig found in the run's namespace; None: ran with the system's fonts


@pytest.fixture(scope="module")
def osdp_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    work = tmp_path_factory.mktemp("osdp")
    data_dir = work / "demo"
    # As a newcomer's machine may be: no CJK font installed (where a mount
    # namespace can be had to hide the system's).
    bare = None if unshare_refusal() else work / "bare"
    started_at = datetime.now(UTC)
    result, said = run_demo(data_dir, "--duration", "16", without_fonts=bare)
    finished_at = datetime.now(UTC)
    engine = create_engine(f"sqlite:///{data_dir / 'rentgate.db'}")
    try:
        token = make_user(engine, username="checker").token
    finally:
        engine.dispose()
    return DemoRun(data_dir, result, said, started_at, finished_at, token, fonts_listed(bare) if bare else None)


@pytest.fixture
async def pages(osdp_demo: DemoRun,
                aiohttp_client: Callable[..., Awaitable[Client]]) -> AsyncIterator[Client]:
    """The server's pages and API on the database the demo left, as an
    administrator; nothing reconciles meanwhile (no ingest)."""
    url = f"sqlite:///{osdp_demo.data_dir / 'rentgate.db'}"
    yield await aiohttp_client(make_app(ServerSettings(database_url=url), ingest=False),
                               headers=bearer(osdp_demo.token))


async def get_json(client: Client, path: str) -> Any:
    resp = await client.get(path)
    assert resp.status == 200, (path, await resp.text())
    return await resp.json()


async def get_text(client: Client, path: str) -> str:
    resp = await client.get(path)
    assert resp.status == 200, (path, await resp.text())
    return visible_text(await resp.text())


def test_headless_osdp_demo_decides_at_the_door_and_raises_alarms(osdp_demo: DemoRun) -> None:
    result = osdp_demo.result
    assert (result["lost"], result["duplicates"]) == (0, 0), result
    assert result["events_stored"] == result["events_generated"] > 0, result
    # The tenant who moved out is refused as revoked; the others get in.
    assert result["decisions"].get("revoked") == 1 and result["decisions"].get("granted", 0) >= 2, result
    assert result["door_alarms"] == {"forced": 1, "held_open": 1}, result

    # Before the building, the district: cases opened from its card reads,
    # every read stored.
    district = result["district"]
    assert district["events_stored"] == district["events_published"] > 0 and district["events_lost"] == 0, district
    assert district["kinds"]["unregistered_occupant"]["cases"] > 0, district

    # The first street's door plates, printed against this server: the
    # sample code opens its public plate page.
    plates = result["plates"]
    assert plates["plates"] > 0 and plates["pages"] >= 1 and Path(plates["pdf"]).stat().st_size > 0, plates
    assert plates["sample_page_status"] == 200 and plates["sample_page_is_plate"], plates
    # The folder is the demo's now: the next demo may empty it.
    assert (osdp_demo.data_dir / MARK).is_file()


def test_the_main_doors_terminal_itself_refuses_a_tenant_whose_registration_ended(osdp_demo: DemoRun) -> None:
    """Issue 16's "done when": the building's face and card terminal opens
    from its own list, which the gateway keeps; once the tenant's
    registration ends at the server, the terminal itself refuses the card."""
    told = osdp_demo.result["terminal"]
    assert told["granted_before_end"] and told["refused_after_end"], told
    assert told["refused_after_s"] <= 10, told
    assert "门禁终端自己拒绝了这张卡" in osdp_demo.said, osdp_demo.said[-2000:]


def test_the_building_camera_counts_who_walks_in_and_its_alerts_arrive_with_their_snapshots(
        osdp_demo: DemoRun) -> None:
    result = osdp_demo.result
    walked = result["camera"]["crossed"]
    at_server = result["camera_at_server"]
    assert walked.get("matched", 0) + walked.get("tailgating", 0) + walked.get("unidentified", 0) >= 2, result
    inward = at_server["events"]
    assert inward["people_crossing"] + inward["tailgating"] + inward["unidentified_entry"] >= 1, at_server
    # Every alert's picture was uploaded over HTTP and stored beside its event.
    assert at_server["alerts"] == inward["tailgating"] + inward["unidentified_entry"], at_server
    assert at_server["alert_snapshots_stored"] == at_server["alerts"], at_server


def test_the_demo_runs_and_prints_plates_on_a_machine_without_cjk_fonts(osdp_demo: DemoRun) -> None:
    import pypdfium2 as pdfium

    if osdp_demo.fonts_listed is None:
        pytest.skip(f"the demo ran with the system's fonts: {unshare_refusal()}")
    assert osdp_demo.fonts_listed.strip() == "", osdp_demo.fonts_listed  # the premise: no Chinese font
    pdf = pdfium.PdfDocument(osdp_demo.result["plates"]["pdf"])
    try:
        names = set().union(*(embedded_font_names(page) for page in pdf))
    finally:
        pdf.close()
    assert names and all(name.endswith("+" + BUNDLED_FACE) for name in names), names


def test_the_story_is_told_in_chinese_with_the_figures_of_today(osdp_demo: DemoRun) -> None:
    said = osdp_demo.said
    assert "模拟一个有 8 栋出租楼的辖区" in said
    assert re.search(r"\d{4}-\d\d-\d\d 案件 \d+ 发现：有人居住但未登记", said), said[-3000:]
    assert "管理员登录" in said and "网格员登录" in said
    line = next(text for text in said.splitlines() if text.startswith("辖区今天："))
    now = osdp_demo.result["district"]["now"]
    for ratio in now["rates"].values():
        assert f"({ratio['numerator']}/{ratio['denominator']})" in line, line


def _demo_today(run: DemoRun) -> date:
    """The day the demo ran, in Shanghai: the day it started, or the next if
    it ran across midnight there (16:00 UTC)."""
    end = datetime.fromisoformat(run.result["district"]["end"]).date()
    assert end in {run.started_at.astimezone(ZONE).date(), run.finished_at.astimezone(ZONE).date()}, end
    return end


def test_the_district_ends_today(osdp_demo: DemoRun) -> None:
    district = osdp_demo.result["district"]
    today = _demo_today(osdp_demo)
    assert datetime.fromisoformat(district["start"]).date() == today - timedelta(days=90)
    engine = create_engine(f"sqlite:///{osdp_demo.data_dir / 'rentgate.db'}")
    try:
        with engine.connect() as conn:
            newest = conn.execute(sa.select(sa.func.max(events.c.occurred_at))
                                  .where(events.c.kind == "card_read", events.c.gateway_id != GATEWAY_ID)).scalar_one()
    finally:
        engine.dispose()
    # The district's last reads are from yesterday evening, not months ago.
    assert osdp_demo.finished_at - newest.astimezone(UTC) < timedelta(days=1, hours=2), newest


async def test_rates_and_open_cases_on_the_pages_are_the_ones_the_demo_printed(osdp_demo: DemoRun,
                                                                                pages: Client) -> None:
    now = osdp_demo.result["district"]["now"]
    api = (await get_json(pages, "/api/v1/rates?level=district&code=440699"))["items"][0]
    overview = await get_text(pages, "/overview")
    for name, ratio in now["rates"].items():
        assert (api[name]["numerator"], api[name]["denominator"]) == (ratio["numerator"], ratio["denominator"])
        # Once in the bars, once at the end of the 30-day trend (today's point).
        assert overview.replace(" ", "").count(f"({ratio['numerator']}/{ratio['denominator']})") >= 2, \
            (name, overview[:3000])
    # Nearly everyone is registered where they live: no stale district at 0 %.
    assert now["rates"]["consistency"]["value"] > 0.8 and now["rates"]["registration"]["value"] > 0.8, now

    cases = (await get_json(pages, "/api/v1/cases?state=active&limit=500"))["items"]
    assert Counter(c["kind"] for c in cases) == Counter({k: n for k, n in now["open_cases"].items() if n})


async def test_departure_prompts_are_about_the_last_weeks(osdp_demo: DemoRun, pages: Client) -> None:
    """A tenant is asked about only after 30 silent days, and those days lie
    inside the simulated months: no prompt about everyone since spring."""
    today = _demo_today(osdp_demo)
    start = datetime.fromisoformat(osdp_demo.result["district"]["start"]).date()
    buildings = (await get_json(pages, "/api/v1/registry/buildings"))["buildings"]
    prompts = 0
    for b in buildings:
        text = await get_text(pages, f"/landlord/buildings/{b['id']}")
        for since in re.findall(r"自 (\S+?) 起没有进出记录", text):
            prompts += 1
            day = _page_date(since, today)
            assert start <= day <= today - timedelta(days=29), (since, text[:1500])
    open_departures = osdp_demo.result["district"]["now"]["open_cases"].get("presumed_departure", 0)
    assert prompts == open_departures


def _page_date(shown: str, today: date) -> date:
    """A date as the pages show it: 12月5日, 2025年12月5日, or 2026-12-05."""
    if m := re.fullmatch(r"(?:(\d{4})年)?(\d{1,2})月(\d{1,2})日", shown):
        return date(int(m.group(1) or today.year), int(m.group(2)), int(m.group(3)))
    return date.fromisoformat(shown[:10])


async def test_a_30_day_trend_with_a_point_for_each_day(osdp_demo: DemoRun, pages: Client) -> None:
    items = (await get_json(pages, "/api/v1/rates/history?code=440699&days=30"))["items"]
    assert len(items) >= 29, items
    today = _demo_today(osdp_demo)
    assert date.fromisoformat(items[-1]["day"]) >= today - timedelta(days=1)


async def test_patrols_are_mostly_on_time(osdp_demo: DemoRun, pages: Client) -> None:
    overdue = await get_json(pages, "/api/v1/patrols/overdue?limit=500")
    units = osdp_demo.result["plates"]["plates"]  # the first street alone has this many units
    assert overdue["total"] < units, overdue["total"]
    for unit in overdue["units"]:
        assert unit["days_overdue"] <= LATE_DAYS_MAX + 1, unit
    text = await get_text(pages, "/c/overdue")
    assert not re.search(r"逾期 \d+\.\d", text)


async def test_the_task_queue_is_worked(pages: Client) -> None:
    """Cases became tasks during the months simulated, and the coordinators
    and the dispatcher worked them through the six steps: a few wait, not
    every task since the first week."""
    every = (await get_json(pages, "/api/v1/tasks?limit=500"))["tasks"]
    still_open = (await get_json(pages, "/api/v1/tasks?state=open&limit=500"))["tasks"]
    overdue = (await get_json(pages, "/api/v1/tasks?state=open&overdue=1&limit=500"))["tasks"]
    assert every and len(still_open) * 3 <= len(every), (len(still_open), len(every))
    assert len(overdue) * 4 <= len(every), (len(overdue), len(every))
    archived = [t for t in every if t["state"] == "archived"]
    assert archived
    trail = (await get_json(pages, f"/api/v1/tasks/{archived[0]['id']}"))["events"]
    assert [e["action"] for e in trail][:1] == ["reported"]


async def test_grades_on_the_printed_plates_are_the_grades_on_the_pages(osdp_demo: DemoRun, pages: Client) -> None:
    import pypdfium2 as pdfium

    printed: dict[tuple[str, str], str | None] = {}
    pdf = pdfium.PdfDocument(osdp_demo.result["plates"]["pdf"])
    try:
        for page in pdf:
            text = page.get_textpage().get_text_range()
            for grade, address, number in re.findall(r"(?:(放心|一般|重点|严控)\r?\n)?(\S+) (\S+?)房\r?\n", text):
                printed[(address, number)] = grade or None
    finally:
        pdf.close()
    assert len(printed) == osdp_demo.result["plates"]["plates"]

    shown: dict[tuple[str, str], str | None] = {}
    for b in (await get_json(pages, "/api/v1/registry/buildings"))["buildings"]:
        detail = await get_json(pages, f"/api/v1/registry/buildings/{b['id']}")
        for unit in detail["units"]:
            shown[(detail["address"], unit["number"])] = GRADE_WORDS.get(unit["grade"]) if unit["grade"] else None
    # The demo building is live while the demo runs: a stranger's card at its
    # door opens an unknown-credential case, which regrades every unit of the
    # building at once (docs/reconcile.md, "Grades"), after its plates were
    # printed. A printed plate is a snapshot; the district's buildings, where
    # nothing happens meanwhile, must agree with the pages exactly.
    live = {k for k in printed if k[0] == BUILDING_ADDRESS}
    assert live, "the demo building's plates were printed"
    assert {k: shown.get(k) for k in printed if k not in live} == {k: v for k, v in printed.items() if k not in live}
    assert all(shown.get(k) is not None for k in live), {k: shown.get(k) for k in live}
    assert any(printed.values())  # graded plates, not only blue ones


async def test_the_demo_building_has_its_rooms_and_tenants(pages: Client) -> None:
    buildings = (await get_json(pages, "/api/v1/registry/buildings"))["buildings"]
    demo_building = next(b for b in buildings if b["name"] == BUILDING_NAME)
    detail = await get_json(pages, f"/api/v1/registry/buildings/{demo_building['id']}")
    assert sorted(u["number"] for u in detail["units"]) == sorted(n for n, *_ in UNITS)
    assert sum(u["occupants"] for u in detail["units"]) == len(TENANT_CARDS)
    listing = await get_text(pages, "/landlord")
    row = listing[listing.index(BUILDING_NAME):][:200]
    assert "房间数 0" not in row and str(len(UNITS)) in row, row


async def test_the_status_page_names_doors_as_configured(pages: Client) -> None:
    text = await get_text(pages, "/")
    assert any(door in text for door, _ in DOORS), text[:2000]
    for internal in ("True", "None", "online=", "outbox_id", "/tmp/", "front", "back", "line-1"):
        assert internal not in text, internal
    assert LINE in text or "读卡器" in text


# ---------------------------------------------------------------------- stopping


def _what_the_demo_said(proc: subprocess.Popen[bytes], data_dir: Path) -> str:
    """The demo's own stderr and the end of each part's log: where a part
    hung on stop is there (the demo aborts it with faulthandler on)."""
    if proc.poll() is None:
        # Started with faulthandler on: SIGABRT writes where each of its
        # threads was to its stderr before it dies.
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    parts = ["demo stderr:\n" + (proc.stderr.read().decode(errors="replace")[-3000:] if proc.stderr else "")]
    for log_file in sorted((data_dir / "logs").glob("*.log")):
        parts.append(f"{log_file.name}:\n" + log_file.read_text(errors="replace")[-4000:])
    return "\n".join(parts)


@pytest.fixture
def interactive_demo(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-m", "rentgate", "demo", "--data-dir", str(tmp_path / "demo"),
                             "--http-port", "0", "--district-buildings", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        # A demo that hung on stop leaves its parts (each in a session of its
        # own) running on this machine: they all name this test's folder.
        subprocess.run(["pkill", "-KILL", "-f", str(tmp_path / "demo")], check=False)


def test_the_demo_stops_when_asked(interactive_demo: subprocess.Popen[bytes], tmp_path: Path) -> None:
    """Told to stop while its building runs, the demo and everything it
    started end within seconds (a gateway once waited on libosdp for ever)."""
    assert interactive_demo.stdout is not None
    # The live part prints each stored event on stdout: the first one means
    # every process is up and the doors are in use.
    first = interactive_demo.stdout.readline()
    assert first, interactive_demo.stderr.read().decode() if interactive_demo.stderr else ""
    asked = time.monotonic()
    interactive_demo.send_signal(signal.SIGTERM)
    try:
        interactive_demo.wait(timeout=40)
    except subprocess.TimeoutExpired:
        pytest.fail("the demo did not stop in 40 s\n" + _what_the_demo_said(interactive_demo, tmp_path / "demo"))
    took = time.monotonic() - asked
    assert took < 20, f"{took:.1f} s\n" + _what_the_demo_said(interactive_demo, tmp_path / "demo")
    # The server, the simulated building and the gateway name the data folder
    # on their command lines: none of them is left running.
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True)
    assert leftovers.stdout == b"", leftovers.stdout


def test_ctrl_c_twice_ends_the_demo_at_once(interactive_demo: subprocess.Popen[bytes], tmp_path: Path) -> None:
    """An impatient second Ctrl-C does not leave parts running (it used to
    interrupt the stop itself): it ends them at once, and says so."""
    assert interactive_demo.stdout is not None and interactive_demo.stderr is not None
    assert interactive_demo.stdout.readline()
    asked = time.monotonic()
    interactive_demo.send_signal(signal.SIGINT)
    interactive_demo.send_signal(signal.SIGINT)
    try:
        interactive_demo.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the demo did not stop in 20 s\n" + _what_the_demo_said(interactive_demo, tmp_path / "demo"))
    # Both signals may arrive before the stop begins: then it is one request, and graceful.
    assert time.monotonic() - asked < 20
    said = interactive_demo.stderr.read().decode()
    assert "正在停止" in said, said
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True)
    assert leftovers.stdout == b"", leftovers.stdout
