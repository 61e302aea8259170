"""The remote-configuration API (docs/remote-config.md): a gateway's
configuration, its new versions and their history, for administrators and
the landlord of the gateway's building (the route policy checks the
gateway's building before the handler runs; one outside the caller's scope
answers like one that does not exist); staged rollouts, administrators
only. Every write commits first, then publishes."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from rentgate import wire
from server.appkeys import METRIC_SOURCES, SETTINGS
from server.auth.policy import allow, require_user
from server.fleet import config_api_doc as doc
from server.fleet import configs, rollouts
from server.fleet.config_service import CONFIGS, ConfigService, config_ctx
from server.web.errors import InvalidInput, NotFound
from server.web.http import answer, api_errors, int_param, read_body
from server.web.ids import parse_id
from server.web.openapi import ID_SCHEMA, Param, api, int_query

MANAGERS = ("admin", "landlord")
GATEWAY = {"gw": "gateway"}
# A configuration's body: the settings a gateway takes (wire.MAX_CONFIG_BYTES)
# and room for the comment and the JSON around them.
MAX_CONFIG_BODY = wire.MAX_CONFIG_BYTES + 4096
MAX_HISTORY = 100
# Any text routes, so that a refusal of the caller's role comes before the
# id is read (the policy table's checks send the literal "{rollout}"); the
# handler answers 404 for anything that is not an id.
ROLLOUT_PATH = "/api/v1/fleet/rollouts/{rollout:[^/]+}"
ROLLOUT_PARAM = (Param("rollout", ID_SCHEMA, "a rollout's id"),)
JsonObj = dict[str, Any]


def _service(request: web.Request) -> ConfigService:
    return request.app[CONFIGS]


async def _bounded_body(request: web.Request, limit: int) -> None:
    declared = request.content_length
    if declared is not None and declared > limit:  # refused before reading it
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
    raw = await request.read()  # aiohttp keeps it for json_body
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))


def _problems_answer(exc: configs.ConfigProblems) -> web.Response:
    return answer({"error": "bad_parameter", "field": "settings", "detail": exc.problem,
                   "problems": [{"path": p.path, "message": p.message} for p in exc.problems]}, 400)


@api_errors
async def get_config(request: web.Request) -> web.Response:
    require_user(request, *MANAGERS)
    gw, service = request.match_info["gw"], _service(request)
    return answer(await service.read(lambda conn: configs.current(conn, gw, service.default_gate_s)))


@api_errors
async def put_config(request: web.Request) -> web.Response:
    user = require_user(request, *MANAGERS)
    gw, service = request.match_info["gw"], _service(request)
    await _bounded_body(request, MAX_CONFIG_BODY)
    body = await read_body(request, doc.ConfigIn)
    key = service.key
    gate_s = body.gate_s if body.gate_s is not None else request.app[SETTINGS].config_gate_s

    def operation(conn: sa.Connection, now: datetime) -> tuple[JsonObj, list[str]]:
        configs.create_version(conn, now, gateway_id=gw, settings=body.settings, gate_s=gate_s, actor=user.id,
                               by_landlord=user.role != "admin",
                               comment=body.comment, key=key)
        return configs.current(conn, gw, service.default_gate_s), [gw]

    try:
        made, published = await service.write(operation)
    except configs.ConfigProblems as exc:
        return _problems_answer(exc)
    return answer({**made, "published": published}, 201)


@api_errors
async def get_history(request: web.Request) -> web.Response:
    require_user(request, *MANAGERS)
    gw = request.match_info["gw"]
    limit = int_param(request.query, "limit", default=20, hi=MAX_HISTORY) or 20
    before = int_param(request.query, "before")
    return answer(await _service(request).read(lambda conn: configs.history(conn, gw, limit=limit, before=before)))


# --------------------------------------------------------------------------- rollouts


def _rollout_id(request: web.Request) -> int:
    found = parse_id(request.match_info["rollout"])
    if found is None:
        raise NotFound("rollout")
    return found


@api_errors
async def post_rollout(request: web.Request) -> web.Response:
    user = require_user(request, "admin")
    service = _service(request)
    body = await read_body(request, doc.RolloutIn)
    key = service.key
    gate_s = body.gate_s if body.gate_s is not None else request.app[SETTINGS].config_gate_s
    if len(wire.config_payload(wire.RemoteConfig(gw="x", version=1, issued_at=wire.utcnow(),
                                                 settings=body.changes)).encode()) > wire.MAX_CONFIG_BYTES:
        raise InvalidInput("changes", f"larger than the {wire.MAX_CONFIG_BYTES} bytes a gateway takes")
    made, published = await service.write(lambda conn, now: rollouts.create_rollout(
        conn, now, changes=body.changes, gateway_ids=body.gateways, building_ids=body.building_ids,
        share=body.share, gate_s=gate_s, comment=body.comment, actor=user.id, key=key))
    return answer({**made, "published": published}, 201)


@api_errors
async def get_rollout(request: web.Request) -> web.Response:
    require_user(request, "admin")
    rollout_id = _rollout_id(request)
    return answer(await _service(request).read(lambda conn: rollouts.progress(conn, rollout_id)))


@api_errors
async def list_rollouts(request: web.Request) -> web.Response:
    require_user(request, "admin")
    limit = int_param(request.query, "limit", default=20, hi=100) or 20
    return answer({"rollouts": await _service(request).read(lambda conn: rollouts.list_rollouts(conn, limit))})


@api_errors
async def continue_rollout(request: web.Request) -> web.Response:
    user = require_user(request, "admin")
    rollout_id, service = _rollout_id(request), _service(request)
    key = service.key
    made, published = await service.write(lambda conn, now: rollouts.continue_rollout(
        conn, now, rollout_id, actor=user.id, key=key))
    return answer({**made, "published": published})


@api_errors
async def halt_rollout(request: web.Request) -> web.Response:
    require_user(request, "admin")
    rollout_id, service = _rollout_id(request), _service(request)
    made, _ = await service.write(lambda conn, now: (rollouts.halt_rollout(conn, now, rollout_id), []))
    return answer(made)


def _metrics(app: web.Application) -> str:
    service = app.get(CONFIGS)
    return service.publisher.render_metrics() if service is not None and service.publisher is not None else ""


def setup(app: web.Application, *, run_service: bool, publish: bool = False) -> None:
    """Routes and the service; the publisher and the outcome task only in
    the process that runs the MQTT services (``run_service``); with
    ``publish`` alone (a web process) a publisher of its own versions."""
    app.cleanup_ctx.append(functools.partial(config_ctx, run_service=run_service, publish=publish))
    if run_service or publish:
        # Registered before the application starts (its state is frozen then).
        app.setdefault(METRIC_SOURCES, []).append(lambda: _metrics(app))
    r = app.router
    mine = allow(*MANAGERS, path=GATEWAY, rule="the landlord of the gateway's building")
    admin = allow("admin")
    r.add_get("/api/v1/gateways/{gw}/config", mine(api(
        "A gateway's configuration: its newest version and what the gateway runs", tag="fleet",
        responses={200: doc.GatewayConfig})(get_config)))
    r.add_put("/api/v1/gateways/{gw}/config", mine(api(
        "Make a new version of a gateway's configuration and publish it", tag="fleet", body=doc.ConfigIn,
        responses={201: doc.GatewayConfigMade}, errors=(409,),
        description="400 lists each setting the gateway would refuse (`problems`: key path and message); "
                    "409 for a revoked gateway; 503 without a signing key.")(put_config)))
    r.add_get("/api/v1/gateways/{gw}/config/history", mine(api(
        "A gateway's configuration versions, newest first: who made each, when, why and what became of it",
        tag="fleet", responses={200: doc.ConfigHistory},
        query=(int_query("limit", "versions per page (20)", hi=MAX_HISTORY),
               int_query("before", "only versions older than this one (the previous page's next_before)")))(
        get_history)))
    r.add_get("/api/v1/fleet/rollouts", admin(api(
        "The latest configuration rollouts and their progress", tag="fleet", responses={200: doc.RolloutList},
        query=(int_query("limit", "how many (20)", hi=100),))(list_rollouts)))
    r.add_post("/api/v1/fleet/rollouts", admin(api(
        "Stage a configuration change: versions for a first wave of gateways now, the rest on continue",
        tag="fleet", body=doc.RolloutIn, responses={201: doc.RolloutMade}, errors=(409,))(post_rollout)))
    r.add_get(ROLLOUT_PATH, admin(api(
        "A rollout's progress: gateways per state, the ones that failed and why", tag="fleet", path=ROLLOUT_PARAM,
        responses={200: doc.Rollout})(get_rollout)))
    r.add_post(ROLLOUT_PATH + "/continue", admin(api(
        "Send the rest of a rollout, once every gateway of the first wave has applied it", tag="fleet",
        path=ROLLOUT_PARAM, responses={200: doc.RolloutMade}, errors=(409,))(continue_rollout)))
    r.add_post(ROLLOUT_PATH + "/halt", admin(api(
        "Halt a staged rollout: no further wave", tag="fleet", path=ROLLOUT_PARAM, responses={200: doc.Rollout},
        errors=(409,))(halt_rollout)))
