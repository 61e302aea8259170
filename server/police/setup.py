"""Wires the police API into the application: the quota meter and its
flushing task, the routes, and the watches (server/police/watch_setup.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import sqlalchemy as sa
from aiohttp import web

from server.appkeys import ENGINE, SETTINGS
from server.db.models import auth_sessions
from server.police import routes, watch_setup
from server.police.appkeys import METER, RULES_ZONE
from server.police.clients import TOKEN_LABEL
from server.police.quota import UsageMeter
from server.registry.appkeys import RULES
from server.rules import load_rules

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 5.0
# Expired police tokens are deleted every so many flushes (10 minutes).
TOKEN_PURGE_ROUNDS = 120


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
    rounds = 0
    while True:
        await asyncio.sleep(FLUSH_EVERY_S)
        rounds += 1
        try:
            await asyncio.to_thread(app[METER].flush, app[ENGINE])
            if rounds % TOKEN_PURGE_ROUNDS == 0:
                await asyncio.to_thread(purge_expired_tokens, app[ENGINE], datetime.now(UTC))
        except Exception as exc:  # noqa: BLE001 - kept in memory, written next time
            log.warning("police usage not written, retrying in %.0f s: %s", FLUSH_EVERY_S, exc)


def purge_expired_tokens(engine: sa.Engine, now: datetime) -> int:
    """Deletes expired police access tokens. A token row names its client
    and nothing else, but it must not outlive its use."""
    with engine.begin() as conn:
        return int(conn.execute(sa.delete(auth_sessions).where(
            auth_sessions.c.label == TOKEN_LABEL, auth_sessions.c.expires_at <= now)).rowcount)


def setup(app: web.Application, *, run_service: bool) -> None:
    app[METER] = UsageMeter()
    app.cleanup_ctx.append(_police_ctx)
    routes.add_routes(app)
    watch_setup.setup(app, run_service=run_service)
