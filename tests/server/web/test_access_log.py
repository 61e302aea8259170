"""The access log keeps enrolment codes and plate tokens out (server/web/access_log.py)."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web

from server.web.access_log import AccessLogger, redact_path


@pytest.mark.parametrize("path, shown", [
    ("/e/K7QP3MXD9T2R", "/e/K7QP…"),
    ("/p/abcdefghijklmnopqrstuvwxyz0123/declare", "/p/abcd…/declare"),
    ("/landlord/buildings/3/terminals", "/landlord/buildings/3/terminals"),
    ("/e/K7", "/e/K7"),
    ("/api/v1/enrol", "/api/v1/enrol"),
])
def test_secret_path_segments_are_cut_to_four_characters(path: str, shown: str) -> None:
    assert redact_path(path) == shown


async def test_a_request_for_an_enrolment_page_leaves_no_code_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/e/{code}", ok)
    # As `rentgate server` runs it (web.run_app passes access_log_class to its AppRunner).
    runner = web.AppRunner(app, access_log_class=AccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/e/K7QP3MXD9T2R") as r:
                assert r.status == 200
    finally:
        await runner.cleanup()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert lines and "K7QP3MXD9T2R" not in " ".join(lines)
    assert '"GET /e/K7QP…" 200' in lines[0]
