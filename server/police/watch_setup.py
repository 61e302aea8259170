"""Wires watches into the application: the routes always; the webhook
signing key always (its public half is a route); and, with ``run_service``
(the process ingests), the matcher as an ingest commit listener, the
webhook deliverer and the expiry task. A process without the service still
sets and withdraws watches: the ingesting process's matcher picks them up
at its next sweep (docs/police-watches.md)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import sqlalchemy as sa
from aiohttp import web

from rentgate.outage import Outage, brief
from server.appkeys import ENGINE, SETTINGS
from server.audit.appkeys import AUDIT
from server.ingest.appkeys import INGEST
from server.ingest.feed import COMMITS
from server.police import watch_routes, watches
from server.police.signing_key import (
    WEBHOOK_KEY,
    WEBHOOK_KEY_PROBLEM,
    WebhookKey,
    WebhookKeyUnavailable,
    load_webhook_key,
)
from server.police.watch_matcher import MATCHER, WatchMatcher
from server.police.webhooks import DELIVERER, WebhookDeliverer
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

# The longest the expiry task sleeps; it wakes sooner when a watch ends
# sooner. Matching itself never alerts past ``expires_at``, so this only
# bounds how long an expired watch's digest outlives it.
EXPIRY_INTERVAL_S = 60.0
_EXPIRY_MIN_S = 0.2


def _expire_sync(engine: sa.Engine) -> tuple[watches.Expiry, datetime | None]:
    with write_transaction(engine) as conn:
        result = watches.expire_watches(conn, datetime.now(UTC))
        return result, watches.next_expiry(conn)


async def expire_forever(engine: sa.Engine, matcher: WatchMatcher | None,
                         interval_s: float = EXPIRY_INTERVAL_S) -> None:
    """Ends watches when they expire (erasing the digest and masked number)."""
    outage = Outage(log, "the database, for ending expired police watches")
    while True:
        wait_s = interval_s
        try:
            result, next_end = await asyncio.to_thread(_expire_sync, engine)
            outage.ok()
            if result.changed and matcher is not None:
                await matcher.refresh()
            if next_end is not None:
                wait_s = min(interval_s, max(_EXPIRY_MIN_S, (next_end - datetime.now(UTC)).total_seconds()))
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:  # the database is away
            outage.failed(exc)
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.warning("watch expiry failed, trying again in %.0f s: %s", interval_s, brief(exc))
        await asyncio.sleep(wait_s)


async def _watch_ctx(app: web.Application, *, run_service: bool) -> AsyncIterator[None]:
    key: WebhookKey | None = None
    try:
        key = await asyncio.to_thread(load_webhook_key, app[SETTINGS])
        app[WEBHOOK_KEY] = key
    except WebhookKeyUnavailable as exc:
        # Everything but setting watches and delivering alerts works; the
        # watch routes answer 503 with this reason.
        app[WEBHOOK_KEY_PROBLEM] = str(exc)
        log.error("police watches unavailable: %s", exc)
    deliverer: WebhookDeliverer | None = None
    matcher: WatchMatcher | None = None
    expiry: asyncio.Task[None] | None = None
    if run_service:
        engine = app[ENGINE]
        if key is not None:
            deliverer = WebhookDeliverer(engine, key, audit=app.get(AUDIT))
            app[DELIVERER] = deliverer
            deliverer.start()
        matcher = WatchMatcher(engine, on_alerts=deliverer.wake if deliverer is not None else lambda: None)
        app[MATCHER] = matcher
        # Commits of this process's ingest, or of ingest processes elsewhere.
        commits = app.get(INGEST) or app.get(COMMITS)
        if commits is not None:
            commits.add_commit_listener(matcher.on_commit)
        matcher.start()
        expiry = asyncio.create_task(expire_forever(engine, matcher), name="police-watch-expiry")
    yield
    if expiry is not None:
        expiry.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await expiry
    if matcher is not None:
        await matcher.stop()
    if deliverer is not None:
        await deliverer.stop()


def setup(app: web.Application, *, run_service: bool) -> None:
    app.cleanup_ctx.append(functools.partial(_watch_ctx, run_service=run_service))
    watch_routes.add_routes(app)
