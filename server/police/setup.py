"""Wires the police API into the application: the quota meter and its
flushing task, the routes, and the watches (server/police/watch_setup.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from server.appkeys import ENGINE, SETTINGS
from server.police import routes
from server.police.appkeys import METER, RULES_ZONE
from server.police.quota import UsageMeter
from server.registry.appkeys import RULES
from server.rules import load_rules

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 5.0


async def _police_ctx(app: web.Application) -> AsyncIterator[None]:
    meter = app[METER]
    # The registry's context (set up before this one) has loaded the rules.
    rules = app.get(RULES)
    if rules is None:
        rules = await asyncio.to_thread(load_rules, app[SETTINGS].rules_file)
    app[RULES_ZONE] = rules.zone
    task = asyncio.create_task(_flush_forever(app), name="police-usage-flush")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:
        await asyncio.to_thread(meter.flush, app[ENGINE])
    except Exception as exc:  # noqa: BLE001 - shutting down; the counts are advisory
        log.warning("police usage not written at shutdown: %s", exc)


async def _flush_forever(app: web.Application) -> None:
    while True:
        await asyncio.sleep(FLUSH_EVERY_S)
        try:
            await asyncio.to_thread(app[METER].flush, app[ENGINE])
        except Exception as exc:  # noqa: BLE001 - kept in memory, written next time
            log.warning("police usage not written, retrying in %.0f s: %s", FLUSH_EVERY_S, exc)


def setup(app: web.Application, *, run_service: bool) -> None:
    app[METER] = UsageMeter()
    app.cleanup_ctx.append(_police_ctx)
    routes.add_routes(app)
    _watches(app, run_service)


def _watches(app: web.Application, run_service: bool) -> None:
    import importlib

    try:  # being written (issue 12); imported by name until it lands
        watch_setup = importlib.import_module("server.police.watch_setup")
    except ImportError:
        return
    watch_setup.setup(app, run_service=run_service)
