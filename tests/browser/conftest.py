"""A real server (make_app on a free port, in a thread with its own event
loop) seeded per test, and one headless Chromium per module driven by
Playwright at a phone's viewport.

Without Chromium the tests skip, or fail when RENTGATE_REQUIRE_SERVICES=1."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from server.app import make_app
from server.db import migrate
from server.db.engine import create_engine
from server.settings import ServerSettings
from tests.browser.seed import World, database_url_for, seed
from tests.conftest import service_missing
from tests.services import ServiceMissing, find_chromium, free_port

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2, "locale": "zh-CN"}
STARTUP_TIMEOUT_S = 30.0


class ServerThread:
    """The application served by aiohttp's AppRunner on its own loop, so the
    synchronous Playwright API can drive it from the test's thread."""

    def __init__(self, app: web.Application, port: int) -> None:
        self.app = app
        self.port = port
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="page-server", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(self.app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(STARTUP_TIMEOUT_S) or self._error is not None:
            raise RuntimeError(f"page server did not start: {self._error!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STARTUP_TIMEOUT_S)


@dataclass(frozen=True)
class Site:
    url: str
    world: World
    database_url: str

    def login(self, page: Page, username: str, password: str = "pw-secret-1", path: str = "/login") -> None:
        page.goto(self.url + path)
        page.fill("#f-username", username)
        page.fill("#f-password", password)
        page.click("form.login button[type=submit]")
        page.wait_for_selector("header.top form[action='/logout']")


# Package scope, not session: the sync API keeps an event loop running in the
# main thread while it is open, which would break every asyncio test after us;
# the browser closes after the last test of tests/browser. One browser per run
# (per worker under xdist), not one per module: a launch takes seconds.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    try:
        executable = find_chromium()
    except ServiceMissing as exc:
        service_missing(exc)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    """The seeded world made once: a folder holding the migrated, seeded
    database and the keys generated beside it (identity numbers are
    encrypted with one of them), for each test to copy whole."""
    folder = tmp_path_factory.mktemp("pages-seeded")
    database_url = database_url_for(folder)
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine)
        world = seed(engine, database_url)
        with engine.connect() as conn:  # fold the WAL into the file so one copy is complete
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return folder, world


@pytest.fixture
def site(tmp_path: Path, browser: Browser, seeded: tuple[Path, World]) -> Iterator[Site]:
    """A fresh copy of the seeded world per test (migrating and seeding each
    took seconds), served on a free port."""
    folder, world = seeded
    shutil.copytree(folder, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    database_url = database_url_for(tmp_path)
    port = free_port()
    server = ServerThread(make_app(ServerSettings(database_url=database_url), ingest=False), port)
    server.start()
    try:
        yield Site(f"http://127.0.0.1:{port}", world, database_url)
    finally:
        server.stop()


@pytest.fixture
def phone(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh phone (cookies and all) per test."""
    context = browser.new_context(**PHONE)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    try:
        yield context
    finally:
        context.close()
