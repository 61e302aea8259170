"""Wires reconciliation into the application: the routes always, and with
``run_service`` (the process that runs the background services) the
engine's two background tasks, woken by ingest commits: this process's own,
or those of ingest processes elsewhere (server/ingest/feed.py)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from server.access.allowlists import Change
from server.access.routes import ACCESS
from server.appkeys import ENGINE, SETTINGS
from server.ingest.appkeys import INGEST
from server.ingest.feed import COMMITS
from server.reconcile import routes
from server.reconcile.appkeys import RECONCILER, SERVICE
from server.reconcile.runner import Reconciler
from server.reconcile.service import ReconcileService
from server.registry.appkeys import RULES
from server.rules import load_rules

log = logging.getLogger(__name__)


async def _reconcile_ctx(app: web.Application, *, run_service: bool) -> AsyncIterator[None]:
    rules = app.get(RULES)
    if rules is None:
        rules = await asyncio.to_thread(load_rules, app[SETTINGS].rules_file)
    reconciler = Reconciler(app[ENGINE], rules)
    app[RECONCILER] = reconciler
    service: ReconcileService | None = None
    if run_service:

        async def publish(changes: list[Change]) -> bool:
            access = app.get(ACCESS)
            return await access.publish(changes) if access is not None else False

        service = ReconcileService(reconciler, sweep_interval_s=app[SETTINGS].reconcile_sweep_interval_s,
                                   publish=publish)
        app[SERVICE] = service
        # Commits of this process's ingest, or of ingest processes elsewhere.
        commits = app.get(INGEST) or app.get(COMMITS)
        if commits is not None:
            commits.add_commit_listener(service.on_commit)
        service.start()
    yield
    if service is not None:
        await service.stop()


def setup(app: web.Application, *, run_service: bool) -> None:
    app.cleanup_ctx.append(functools.partial(_reconcile_ctx, run_service=run_service))
    routes.add_routes(app)
