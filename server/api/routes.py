"""aiohttp handlers. Database work runs in worker threads; bad parameters are
400s with a JSON body, never 500s."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from server.api import api_doc as doc
from server.api import queries
from server.api.params import ParamError, parse_event_filter, parse_page
from server.appkeys import ENGINE, METRIC_SOURCES
from server.auth.policy import allow, public
from server.db.engine import database_reachable
from server.ingest.appkeys import INGEST, METRICS
from server.ingest.metrics import render
from server.plates.appkeys import PLATE_KEYS
from server.reconcile import metrics as reconcile_metrics
from server.reconcile.appkeys import RECONCILER
from server.web.openapi import Reply, api

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HEALTH_DB_TIMEOUT_S = 3.0


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ParamError as exc:
        # "field" as every other 400 of the API names it; "parameter" for older clients.
        return web.json_response({"error": "bad_parameter", "field": exc.name, "parameter": exc.name,
                                  "detail": exc.problem}, status=400)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("database error serving %s: %s", request.path, exc)
        return web.json_response({"error": "database_unavailable", "detail": "the database did not answer; try again"},
                                 status=503)


async def events_handler(request: web.Request) -> web.Response:
    event_filter = parse_event_filter(request.query)
    return web.json_response(await asyncio.to_thread(queries.list_events, request.app[ENGINE], event_filter))


async def gateways_handler(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(queries.list_gateways, request.app[ENGINE]))


async def dead_letters_handler(request: web.Request) -> web.Response:
    page = parse_page(request.query)
    return web.json_response(await asyncio.to_thread(queries.list_dead_letters, request.app[ENGINE], page))


async def gaps_handler(request: web.Request) -> web.Response:
    page = parse_page(request.query)
    gateway = request.query.get("gateway") or None
    return web.json_response(await asyncio.to_thread(queries.list_gaps, request.app[ENGINE], gateway, page))


async def _database_ok(request: web.Request) -> bool:
    try:
        return await asyncio.wait_for(asyncio.to_thread(database_reachable, request.app[ENGINE]),
                                      HEALTH_DB_TIMEOUT_S)
    except TimeoutError:
        return False


def _mqtt_state(request: web.Request) -> str:
    ingest = request.app.get(INGEST)
    if ingest is None:
        return "disabled"
    return "connected" if ingest.mqtt_connected else "disconnected"


async def healthz_handler(request: web.Request) -> web.Response:
    database_ok = await _database_ok(request)
    mqtt = _mqtt_state(request)
    ingest = request.app.get(INGEST)
    healthy = database_ok and mqtt != "disconnected" and (ingest is None or ingest.database_ok)
    body: dict[str, Any] = {
        "status": "ok" if healthy else "unhealthy",
        "database": "ok" if database_ok else "unreachable",
        "mqtt": mqtt,
    }
    if ingest is not None:
        body["ingest"] = "ok" if ingest.database_ok else "commit_failing"
    return web.json_response(body, status=200 if healthy else 503)


async def metrics_handler(request: web.Request) -> web.Response:
    database_ok = await _database_ok(request)
    text = render(request.app[METRICS], mqtt_connected=_mqtt_state(request) == "connected", database_ok=database_ok)
    if RECONCILER in request.app and database_ok:
        text += await asyncio.to_thread(reconcile_metrics.render, request.app[RECONCILER])
    if PLATE_KEYS in request.app:
        text += request.app[PLATE_KEYS].rejections.metrics()
    for source in request.app.get(METRIC_SOURCES, []):
        text += source()
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


PROBE = "a probe for load balancers and monitoring"


def add_routes(app: web.Application) -> None:
    app.middlewares.append(json_errors)
    admin = allow("admin")
    r = app.router
    # What each route takes and answers, for the OpenAPI document (server/web/openapi.py).
    r.add_get("/api/v1/events", admin(api("Stored events, oldest first", tag="events", query=doc.EVENT_QUERY,
                                          responses={200: doc.EventPage})(events_handler)))
    r.add_get("/api/v1/gateways", admin(api("Gateways and their last status", tag="events",
                                            responses={200: doc.GatewayList})(gateways_handler)))
    r.add_get("/api/v1/dead-letters", admin(api("Messages ingest could not store", tag="events", query=doc.PAGE,
                                                responses={200: doc.DeadLetterPage})(dead_letters_handler)))
    r.add_get("/api/v1/gaps", admin(api("Gaps in gateways' sequence numbers", tag="events", query=doc.GAP_QUERY,
                                        responses={200: doc.GapPage})(gaps_handler)))
    add_probe_routes(app)


def add_probe_routes(app: web.Application) -> None:
    """/healthz and /metrics: all an ingest-only process serves (docs/scaling.md)."""
    r = app.router
    # Open: load balancers and Prometheus probe these without credentials, and
    # they reveal only counters and up/down states, no people or events.
    r.add_get("/healthz", public(PROBE)(api("Up or down", tag="probes", responses={
        200: Reply(doc.Health, "healthy"), 503: Reply(doc.Health, "the database or the broker is unreachable")})(
        healthz_handler)))
    r.add_get("/metrics", public(PROBE + "; counts only, no personal data")(api("Prometheus counters", tag="probes",
        responses={200: Reply({"type": "string"}, "Prometheus text format", media="text/plain")})(metrics_handler)))
