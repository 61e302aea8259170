"""``/api/v1`` routes for gateways' buildings and allowlists, and the access
service that commits and publishes allowlist changes (the registry's writes
go through it too). Administrators only (docs/auth.md). Buildings, persons,
registrations and credentials are written through the registry API
(server/registry/routes.py, docs/registry-api.md)."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from rentgate import wire
from server.access import allowlists, registry
from server.access import api_doc as doc
from server.access.errors import SigningKeyUnavailable
from server.access.keys import SigningKey, load_signing_key
from server.access.publisher import AllowlistPublisher
from server.access.service import AccessService
from server.appkeys import ENGINE, SETTINGS
from server.auth.policy import allow
from server.db.models import allowlist_versions, gateways
from server.web.errors import InvalidInput, NotFound
from server.web.http import api_errors, read_body
from server.web.ids import DbId
from server.web.openapi import api

log = logging.getLogger(__name__)

ACCESS = web.AppKey("access", AccessService)
_GATEWAY_ID = re.compile(wire.GATEWAY_ID_PATTERN)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayBuildingIn(_Body):
    building_id: DbId | None


def _gateway_id(request: web.Request) -> str:
    gw = request.match_info["gw"]
    if not _GATEWAY_ID.fullmatch(gw):
        raise InvalidInput("gateway", f"not a gateway id ({wire.GATEWAY_ID_PATTERN})")
    return gw


async def _apply(request: web.Request, operation: Any, status: int = 200) -> web.Response:
    outcome = await request.app[ACCESS].apply(operation)
    return web.json_response(outcome.body, status=status)


@api_errors
async def assign_gateway(request: web.Request) -> web.Response:
    gw = _gateway_id(request)
    body = await read_body(request, GatewayBuildingIn)
    return await _apply(request, lambda conn, now: registry.assign_gateway(conn, now, gw, body.building_id))


@api_errors
async def gateway_allowlist(request: web.Request) -> web.Response:
    gw = _gateway_id(request)
    settings = request.app[SETTINGS]
    keep = timedelta(days=settings.allowlist_revoked_keep_days)
    body = await asyncio.to_thread(_allowlist_doc, request.app[ENGINE], gw, keep)
    return web.json_response(body)


def _allowlist_doc(engine: sa.Engine, gw: str, keep: timedelta) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(gateways.c.building_id, allowlist_versions.c.published_version,
                      allowlist_versions.c.published_at)
            .outerjoin(allowlist_versions, allowlist_versions.c.gateway_id == gateways.c.id)
            .where(gateways.c.id == gw)
        ).first()
        if row is None:
            raise NotFound("gateway", gw)
        snapshot = allowlists.read_snapshot(conn, gw, datetime.now(UTC), keep)
    building_id, published_version, published_at = row
    return {
        "gateway": gw, "building_id": building_id,
        "version": snapshot.version if snapshot else None,
        "published_version": published_version,
        "published_at": published_at.isoformat() if published_at else None,
        "entries": snapshot.entries if snapshot else [],
        "revoked": snapshot.revoked if snapshot else [],
    }


@api_errors
async def allowlist_keys(request: web.Request) -> web.Response:
    service = request.app[ACCESS]
    if service.key is None:
        return web.json_response({"error": "no_signing_key", "detail": service.key_problem}, status=503)
    return web.json_response({"keys": {service.key.key_id: service.key.public_b64}, "active": service.key.key_id})


def setup(app: web.Application, *, mqtt: bool, background: bool = True) -> None:
    """Routes, and the access service (publishing over MQTT when ``mqtt``;
    answering gateways' requests and catching up too when ``background``:
    server/access/publisher.py)."""
    app.cleanup_ctx.append(functools.partial(_access_ctx, mqtt=mqtt, background=background))
    r = app.router
    # Every access route changes or reveals who may open which door: admins only.
    admin = allow("admin")
    # What each route takes and answers, for the OpenAPI document (server/web/openapi.py).
    r.add_put("/api/v1/gateways/{gw}/building", admin(
        api("Put a gateway in a building (null: in none)", tag="access", body=GatewayBuildingIn,
            responses={200: doc.GatewayAssigned}, errors=(409,))(assign_gateway)))
    r.add_get("/api/v1/gateways/{gw}/allowlist", admin(
        api("A gateway's current allowlist", tag="access", responses={200: doc.Allowlist})(gateway_allowlist)))
    r.add_get("/api/v1/allowlist-keys", admin(
        api("The public keys gateways check allowlists with", tag="access", description="503 without a signing key",
            responses={200: doc.AllowlistKeys})(allowlist_keys)))


async def _access_ctx(app: web.Application, *, mqtt: bool, background: bool) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    key: SigningKey | None = None
    problem: str | None = None
    try:
        key = await asyncio.to_thread(load_signing_key, settings)
        log.info("allowlists signed with key id %s, public key %s", key.key_id, key.public_b64)
    except SigningKeyUnavailable as exc:
        problem = str(exc)
        log.error("%s", problem)
    publisher = AllowlistPublisher(settings, app[ENGINE], key, background=background) if mqtt else None
    app[ACCESS] = AccessService(app[ENGINE], key, problem, publisher)
    task = asyncio.create_task(publisher.run(), name="allowlist-publisher") if publisher else None
    yield
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - report, but let the rest shut down
            log.exception("allowlist publisher failed")
