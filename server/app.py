"""The server application: engine, ingest service and HTTP routes, each
resource with its own cleanup context."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web

from server.access import routes as access_routes
from server.api.routes import add_probe_routes, add_routes
from server.appkeys import ENGINE, SETTINGS
from server.audit import routes as audit_routes
from server.audit import setup as audit_setup
from server.auth import setup as auth_setup
from server.auth.policy import check_policies, policy_of, public
from server.db import singleton
from server.db.engine import create_engine, redacted
from server.db.read_pool import read_engine_ctx
from server.fleet import setup as fleet_setup
from server.grid import setup as grid_setup
from server.ingest.appkeys import INGEST, METRICS
from server.ingest.consumer import IngestService
from server.ingest.feed import CommitNotifier, commit_feed_ctx, is_postgresql
from server.ingest.metrics import IngestMetrics
from server.ingest.store import EventStore
from server.media.limits import UPLOAD_BODY_MAX, body_limit_middleware
from server.pages import dashboard
from server.pages import setup as pages_setup
from server.plates import declare_api
from server.plates.appkeys import plate_keys_ctx
from server.police import setup as police_setup
from server.reconcile import setup as reconcile_setup
from server.registry import setup as registry_setup
from server.retention import setup as retention_setup
from server.settings import ServerSettings
from server.snapshots import setup as snapshots_setup
from server.web import openapi
from server.web.http import json_http_errors, no_nul_in_query

log = logging.getLogger(__name__)

SHUTDOWN_COMMIT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Parts:
    """What one process runs (docs/scaling.md)."""

    ingest: bool      # the MQTT ingest: events into the database, acks out
    pages: bool       # the pages and the APIs
    publish: bool     # MQTT publishes of what this process's own requests write (allowlists, configurations)
    background: bool  # reconciliation, police watches, retention, catch-ups, fleet health: exactly one process

    @classmethod
    def of(cls, role: str) -> Parts:
        return _ROLES[role]


_ROLES = {
    "all": Parts(ingest=True, pages=True, publish=True, background=True),
    "ingest": Parts(ingest=True, pages=False, publish=False, background=False),
    "web": Parts(ingest=False, pages=True, publish=True, background=False),
    "reconcile": Parts(ingest=False, pages=False, publish=True, background=True),
}
# ``make_app(ingest=False)``: the pages and the API alone, nothing over MQTT
# and nothing in the background (tests, the route table, a read replica).
API_ONLY = Parts(ingest=False, pages=True, publish=False, background=False)


def make_app(settings: ServerSettings, *, ingest: bool = True) -> web.Application:
    """The parts of ``settings.role``; ``ingest=False`` serves the API alone
    (no MQTT, no background work), e.g. for a read replica."""
    parts = Parts.of(settings.role) if ingest else API_ONLY
    # Photos from patrols and problem reports exceed aiohttp's 1 MiB default;
    # other routes keep 1 MiB (server/media/limits.py).
    # json_http_errors first (outermost): aiohttp's own refusals on /api/ get the API's error shape.
    app = web.Application(client_max_size=UPLOAD_BODY_MAX,
                          middlewares=[json_http_errors, no_nul_in_query, body_limit_middleware])
    app[SETTINGS] = settings
    app[METRICS] = IngestMetrics()
    app.cleanup_ctx.append(_engine_ctx)
    if parts.ingest:
        app.cleanup_ctx.append(_ingest_ctx)
    if not parts.pages and not parts.background:
        # An ingest worker: its probes and nothing else (no sessions, no
        # keys, no services), so that N of them cost little more than the
        # ingest itself.
        add_probe_routes(app)
        check_policies(app)
        return app
    app.cleanup_ctx.append(read_engine_ctx)
    app.cleanup_ctx.append(plate_keys_ctx)
    if parts.background and not parts.ingest:
        # Exactly one reconcile process per database (server/db/singleton.py).
        app.cleanup_ctx.append(_one_reconcile_ctx)
        # Reconciliation and the watches wake on commits made by ingest
        # processes elsewhere (LISTEN/NOTIFY on PostgreSQL, else polling).
        app.cleanup_ctx.append(commit_feed_ctx)
    auth_setup.setup(app)
    audit_setup.setup(app)
    audit_routes.add_routes(app)
    add_routes(app)
    dashboard.add_routes(app)
    access_routes.setup(app, mqtt=parts.publish, background=parts.background)
    registry_setup.setup(app)
    declare_api.add_routes(app)
    reconcile_setup.setup(app, run_service=parts.background)
    grid_setup.setup(app)
    police_setup.setup(app, run_service=parts.background)
    retention_setup.setup(app, run_jobs=parts.background)
    snapshots_setup.setup(app)
    fleet_setup.setup(app, run_service=parts.background, publish=parts.publish)
    pages_setup.setup(app)
    # The OpenAPI document describes the API, not data: anyone may read it.
    openapi.add_route(app, public("describes the API, not data"), policy_of)
    # A route that declares no policy stops the server here, not in production.
    check_policies(app)
    return app


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS].database_url
    engine = create_engine(url)
    log.info("database %s", redacted(url))
    app[ENGINE] = engine
    yield
    await asyncio.to_thread(engine.dispose)


async def _ingest_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = EventStore(app[ENGINE], max_payload_bytes=settings.max_payload_bytes)
    service = IngestService(settings, store, metrics=app[METRICS])
    app[INGEST] = service
    task = asyncio.create_task(service.run(), name="ingest-service")
    task.add_done_callback(_report_end)
    notifying: asyncio.Task[None] | None = None
    stopping = asyncio.Event()
    if settings.role == "ingest" and is_postgresql(app[ENGINE]):
        # Reconciliation runs in another process: tell it of new events.
        notifier = CommitNotifier(app[ENGINE])
        service.add_commit_listener(notifier.on_commit)
        notifying = asyncio.create_task(notifier.run(stopping), name="ingest-notify")
    yield
    # Commit and acknowledge what has arrived before the engine goes away.
    service.stop()
    try:
        await asyncio.wait_for(task, SHUTDOWN_COMMIT_TIMEOUT_S)
    except TimeoutError:
        log.error("ingest did not finish within %ss; unacknowledged messages will be resent",
                  SHUTDOWN_COMMIT_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - report, but let the rest shut down
        log.exception("ingest service failed")
    stopping.set()
    if notifying is not None:
        # A notification left unsent is covered by the other side's sweeps.
        notifying.cancel()
        await asyncio.gather(notifying, return_exceptions=True)


# How often the reconcile process makes sure it still holds its lock: a
# database restart takes the lock with the session (server/db/singleton.py).
LOCK_CHECK_S = 5.0
# What the process does when another reconcile process took the lock while
# the database was away (tests put their own in before startup).
ON_RECONCILE_LOCK_LOST: web.AppKey[Callable[[], None]] = web.AppKey("on_reconcile_lock_lost")
# Set when this process stopped for that reason: `rentgate server` then
# exits with status 2 and says why.
reconcile_lock_lost = threading.Event()


async def _one_reconcile_ctx(app: web.Application) -> AsyncIterator[None]:
    lock = singleton.HeldLock(app[ENGINE], "reconcile")
    await asyncio.to_thread(lock.take)
    keeper = asyncio.create_task(_keep_reconcile_lock(app, lock), name="reconcile-lock")
    try:
        yield
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        await asyncio.to_thread(lock.close)


async def _keep_reconcile_lock(app: web.Application, lock: singleton.HeldLock) -> None:
    while True:
        await asyncio.sleep(LOCK_CHECK_S)
        try:
            state = await asyncio.to_thread(lock.check)
        except Exception:  # noqa: BLE001 - the keeper must outlive a surprise; try again next round
            log.exception("checking the reconcile lock failed")
            continue
        if state == "retaken":
            log.warning("the database is back: this process holds the reconcile lock again")
        elif state == "lost":
            log.error("another reconcile process took the reconcile lock while the database was away; "
                      "this one stops, so that exactly one runs (docs/scaling.md)")
            reconcile_lock_lost.set()
            app.get(ON_RECONCILE_LOCK_LOST, _stop_this_process)()
            return


def _stop_this_process() -> None:
    # run_app turns SIGTERM into its graceful exit (cleanup contexts run).
    signal.raise_signal(signal.SIGTERM)


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("ingest service stopped: %r; /healthz reports it", exc, exc_info=exc)
