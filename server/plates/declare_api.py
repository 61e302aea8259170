"""``POST /api/v1/declarations``: a tenant declares themself at the unit of
a door plate. Anyone may call it; the signed plate token is what authorises
it (a refused token is logged like a refused scan of the plate page), and a
per-address limit keeps a script from probing identity numbers. The
registration it creates is pending until the landlord or the grid
coordinator confirms it (server/registry/service.declare).

It lives with the plates, not the registry, because the plate is its
authority: the registry knows nothing of plates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import sqlalchemy as sa
from aiohttp import web

from server.access.registry import Outcome
from server.access.routes import ACCESS
from server.appkeys import ENGINE
from server.auth.policy import public
from server.plates import service as plate_service
from server.plates.appkeys import PLATE_KEYS
from server.plates.errors import TokenRejected
from server.plates.refusals import record_refusal, status_for
from server.registry import api_doc as out
from server.registry import api_input as inp
from server.registry import queries, service
from server.registry.appkeys import RULES, VAULT, VAULT_PROBLEM
from server.registry.routes import VaultUnavailable
from server.web.errors import InvalidInput
from server.web.http import answer, api_errors, read_body
from server.web.openapi import api
from server.web.ratelimit import RateLimiter, retry_after_header

# Self-declarations per client address and hour: a household declares a few
# people, a script thousands. The plate page's form shares the limit.
DECLARATIONS_PER_HOUR = 10
DECLARATION_LIMITER = web.AppKey("declaration_limiter", RateLimiter)
DECLARATION_ACTOR = "tenant:self-declaration"


async def _plate_unit(request: web.Request, token: str) -> int | web.Response:
    """The unit of a door plate's token, or the JSON refusal (logged like a
    refused scan of the plate page)."""
    keyring = request.app[PLATE_KEYS].keyring
    if keyring is None:
        return web.json_response({"error": "plate_keys_unavailable", "detail": request.app[PLATE_KEYS].problem},
                                 status=503)

    def read() -> int | TokenRejected:
        with request.app[ENGINE].connect() as conn:
            try:
                return plate_service.resolve(conn, keyring, token, datetime.now(UTC)).unit_id
            except TokenRejected as exc:
                return exc

    found = await asyncio.to_thread(read)
    if isinstance(found, TokenRejected):
        await record_refusal(request, token, found)
        return web.json_response({"error": "plate_refused", "field": "plate", "reason": found.reason,
                                  "detail": str(found)}, status=status_for(found))
    return found


@api_errors
async def declare(request: web.Request) -> web.Response:
    wait = request.app[DECLARATION_LIMITER].hit(request.remote or "unknown")
    if wait is not None:
        return web.json_response({"error": "too_many_requests",
                                  "detail": f"at most {DECLARATIONS_PER_HOUR} declarations an hour from one address"},
                                 status=429, headers={"Retry-After": retry_after_header(wait)})
    vault = request.app.get(VAULT)
    if vault is None:
        raise VaultUnavailable(request.app.get(VAULT_PROBLEM, "no identity-number key loaded"))
    b = await read_body(request, inp.DeclarationIn)
    now = datetime.now(UTC)
    arrived_at = inp.not_future("arrived_at", inp.when("arrived_at", b.arrived_at, request.app[RULES].zone), now)
    inp.id_number("person.id_number", b.person.id_number)

    unit_id = await _plate_unit(request, b.plate)
    if isinstance(unit_id, web.Response):
        return unit_id
    person = service.PersonFields(id_number=b.person.id_number, name=b.person.name, phone=b.person.phone,
                                  origin=b.person.origin)

    def operation(conn: sa.Connection, now: datetime) -> Outcome:
        if queries.unit_building(conn, unit_id) is None:
            raise InvalidInput("plate", "the plate's unit no longer exists")
        return service.declare(conn, now, DECLARATION_ACTOR, vault, unit_id=unit_id, person=person,
                               arrived_at=arrived_at)
    body = (await request.app[ACCESS].apply(operation)).body
    # An anonymous caller learns nothing of the registry's own ids for the person.
    return answer({k: body[k] for k in ("id", "status", "unit_id", "arrived_at", "person_masked")}, 201)


def add_routes(app: web.Application) -> None:
    app[DECLARATION_LIMITER] = RateLimiter(DECLARATIONS_PER_HOUR, 3600.0)
    pii = "needs the identity-number key (503 without it)"
    app.router.add_post("/api/v1/declarations", public("a signed door-plate token; rate-limited per address")(
        api("A tenant declares themself at the door of a plate", tag="registry", body=inp.DeclarationIn,
            description=pii + "; a refused plate is 404 (forged, unknown) or 410 (expired, withdrawn)",
            responses={201: out.Declared}, errors=(404, 410, 429))(declare)))
