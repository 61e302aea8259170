"""Enrolment's routes (docs/enrolment.md): a landlord (or an administrator)
makes a one-time code for a building, watches what became of it, cancels
it; a gateway redeems it at ``POST /api/v1/enrol`` (server/fleet/redeem.py).
The public page a code's QR points at is server/pages/terminals.py's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import segno
from aiohttp import web

from rentgate import wire
from server.appkeys import ENGINE, METRIC_SOURCES, SETTINGS
from server.auth.policy import allow, public, require_user
from server.fleet import enrol, redeem
from server.settings import ServerSettings
from server.web.errors import NotFound
from server.web.http import answer, api_errors
from server.web.openapi import Out, Reply, api
from server.web.transactions import write_transaction

MANAGERS = ("admin", "landlord")
JsonObj = dict[str, Any]


class NewEnrolment(Out):
    enrolment: int
    # The code as people read and type it: XXXX-XXXX-XXXX. Shown once: the
    # server keeps only its hash.
    code: str
    expires_at: datetime
    # What the QR holds (<public_url>/e/<CODE>) and the QR itself as SVG.
    qr_text: str
    qr_svg: str


class EnrolledGateway(Out):
    id: str
    hostname: str | None
    online: bool
    revoked: bool
    last_seen: datetime | None


class EnrolmentState(Out):
    enrolment: int
    building_id: int
    state: str  # waiting | enrolled | online | expired | cancelled
    created_at: datetime
    expires_at: datetime
    gateway: EnrolledGateway | None


class EnrolmentCancelled(Out):
    enrolment: int
    state: str


def qr_svg(text: str, title: str = "enrolment code") -> str:
    """The QR as inline SVG (error correction M: readable off a phone screen
    by a gateway's camera at arm's length)."""
    svg: str = segno.make(text, error="m").svg_inline(scale=6, border=2, omitsize=True, title=title)
    return svg


def issue_code(settings: ServerSettings, engine: Any, building_id: int, user_id: int) -> JsonObj:
    """A new code for the building, as the API and the page show it."""
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        made = enrol.create_code(conn, now, building_id=building_id, user_id=user_id,
                                 ttl_s=settings.enrol_code_ttl_s)
    text = enrol.qr_text(settings, made.code)
    return {"enrolment": made.enrolment_id, "code": enrol.grouped(made.code), "expires_at": made.expires_at,
            "qr_text": text, "qr_svg": qr_svg(text)}


@api_errors
async def create_enrolment(request: web.Request) -> web.Response:
    user = require_user(request, *MANAGERS)
    building_id = int(request.match_info["id"])
    body = await asyncio.to_thread(issue_code, request.app[SETTINGS], request.app[ENGINE], building_id, user.id)
    response = answer(body, 201)
    response.headers["Cache-Control"] = "no-store"
    return response


def read_state(engine: Any, enrolment_id: int) -> JsonObj:
    with engine.connect() as conn:
        found = enrol.enrolment_state(conn, datetime.now(UTC), enrolment_id)
    if found is None:
        raise NotFound("enrolment", enrolment_id)
    return found


@api_errors
async def get_enrolment(request: web.Request) -> web.Response:
    require_user(request, *MANAGERS)
    body = await asyncio.to_thread(read_state, request.app[ENGINE], int(request.match_info["id"]))
    response = answer(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def cancel(engine: Any, enrolment_id: int) -> JsonObj:
    with write_transaction(engine) as conn:
        return enrol.cancel_code(conn, datetime.now(UTC), enrolment_id)


@api_errors
async def delete_enrolment(request: web.Request) -> web.Response:
    require_user(request, *MANAGERS)
    return answer(await asyncio.to_thread(cancel, request.app[ENGINE], int(request.match_info["id"])))


async def redeem_code(request: web.Request) -> web.Response:
    return await redeem.attempt(request)


def setup(app: web.Application) -> None:
    settings = app[SETTINGS]
    guard = redeem.make_guard(settings.enrol_attempts_per_address, settings.enrol_attempts_per_minute)
    app[redeem.ENROL_GUARD] = guard
    app.setdefault(METRIC_SOURCES, []).append(guard.metrics.render)
    r = app.router
    building, enrolment = {"id": "building"}, {"id": "enrolment"}
    r.add_post("/api/v1/buildings/{id}/enrolments", allow(*MANAGERS, path=building, rule="the caller's buildings")(
        api("Make a one-time code that enrols a terminal (gateway) into the building", tag="fleet",
            description=f"valid for enrol_code_ttl_s; at most {enrol.MAX_LIVE_CODES} live codes per building (409)",
            responses={201: NewEnrolment}, errors=(409,))(create_enrolment)))
    r.add_get("/api/v1/enrolments/{id}", allow(*MANAGERS, path=enrolment, rule="codes of the caller's buildings")(
        api("What became of an enrolment code: waiting, enrolled, online, expired or cancelled", tag="fleet",
            responses={200: EnrolmentState})(get_enrolment)))
    r.add_delete("/api/v1/enrolments/{id}", allow(*MANAGERS, path=enrolment, rule="codes of the caller's buildings")(
        api("Cancel an unused enrolment code", tag="fleet", responses={200: EnrolmentCancelled},
            errors=(409,))(delete_enrolment)))
    r.add_post("/api/v1/enrol", public("a one-time code bound to a building; rate-limited per address and in all")(
        api("A gateway enrols with a landlord's code and its certificate signing request", tag="fleet",
            body=wire.EnrolRequest,
            description="used, expired, cancelled and unknown codes all get the same 403; a bad body or CSR 400; "
                        "too many attempts 429; the broker unreachable 503 (the code stays usable)",
            responses={200: Reply(wire.EnrolResponse, "the gateway's identity, broker login and first "
                                                      "configuration")},
            errors=(403, 429))(redeem_code)))
