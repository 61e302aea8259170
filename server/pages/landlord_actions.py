"""The landlord pages' forms: register (optionally with a card), deregister,
confirm or reject a self-declaration, answer a departure prompt. Each is
Post/Redirect/Get; an input problem comes back on the same page (400/409)
with the field named, never as a 500."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from aiohttp import web

from server.access.registry import Outcome
from server.access.routes import ACCESS
from server.auth.policy import AuthUser, actor_of
from server.pages import queries_landlord as q
from server.pages.forms import (
    FormErrors,
    card_value,
    check_id_number,
    from_invalid_input,
    moment,
    parse_day,
    read_form,
    required,
    text,
    today_in,
)
from server.pages.guard import LANDLORD_ROLES, page_user, read, require_building
from server.pages.landlord import render_building, render_unit, unit_building
from server.pages.layout import PageContext
from server.pages.state import PAGES
from server.reconcile.cases import answer_departure
from server.registry import service
from server.web.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)
Operation = Callable[[sa.Connection, datetime], Outcome]


def _done(path: str, ok: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{path}?ok={ok}")


def _conflict(ctx: PageContext, exc: Exception) -> FormErrors:
    return FormErrors(general=[ctx.t["error.conflict"].format(detail=str(exc))])


async def _apply(request: web.Request, operation: Operation) -> Outcome:
    """Through the access service, so allowlist changes (a card issued or
    revoked) reach the gateways right after the commit."""
    return await request.app[ACCESS].apply(operation)


async def register_handler(request: web.Request) -> web.Response:
    ctx, user = page_user(request, *LANDLORD_ROLES)
    unit_id = int(request.match_info["id"])
    await unit_building(request, ctx, unit_id)
    form = await read_form(request)
    state = request.app[PAGES]
    zone = state.rules.zone
    today = today_in(zone, datetime.now(UTC))
    errors = FormErrors()
    id_number = text(form, "id_number")
    check_id_number(ctx.t, id_number, today, errors)
    name = required(ctx.t, form, "name", errors)
    arrived = parse_day(ctx.t, form, "arrived", today, errors)
    card = card_value(ctx.t, form, errors)
    # Everything but the identity number goes back into the form.
    values = {k: text(form, k) for k in ("name", "phone", "origin", "arrived", "card", "moved")}
    if state.vault is None:
        errors.general.append(ctx.t["error.vault"])
        return await render_unit(request, ctx, unit_id, values=values, errors=errors, status=503)
    if errors.fields or arrived is None:
        return await render_unit(request, ctx, unit_id, values=values, errors=errors, status=400)
    vault, arrived_day = state.vault, arrived
    person = service.PersonFields(id_number=id_number, name=name, phone=text(form, "phone") or None,
                                  origin=text(form, "origin") or None)
    source = "landlord" if user.role == "landlord" else "coordinator"

    def operation(conn: sa.Connection, now: datetime) -> Outcome:
        # A person registered outside the user's buildings makes this a move
        # awaiting the grid coordinator's verification (docs/registry.md).
        return service.register(conn, now, actor_of(user), vault, unit_id=unit_id, person=person,
                                arrived_at=moment(arrived_day, zone, now), source=source,
                                end_previous=bool(values["moved"]), credential=("em4100", card) if card else None,
                                confirmed_by=user.id, scope=service.Scope.of(user.role, user.id))

    try:
        outcome = await _apply(request, operation)
    except InvalidInput as exc:
        return await render_unit(request, ctx, unit_id, values=values, errors=from_invalid_input(ctx.t, exc),
                                 status=400)
    except Conflict as exc:
        return await render_unit(request, ctx, unit_id, values=values, errors=_conflict(ctx, exc), status=409)
    log.info("unit %s: registration %s (%s) by %s", unit_id, outcome.body.get("id"), outcome.body.get("status"),
             actor_of(user))
    pending = outcome.body.get("status") == "pending"
    raise _done(f"/landlord/units/{unit_id}", "registered_pending_ok" if pending else "registered_ok")


async def _registration_access(request: web.Request) -> tuple[PageContext, AuthUser, int, int]:
    ctx, user = page_user(request, *LANDLORD_ROLES)
    reg_id = int(request.match_info["id"])

    def load() -> int | None:
        with read(request).connect() as conn:
            return q.building_of_registration(conn, reg_id)

    building_id = await require_building(request, ctx, user, await asyncio.to_thread(load))
    return ctx, user, reg_id, building_id


async def _unit_of(request: web.Request, reg_id: int) -> int | None:
    def load() -> int | None:
        with read(request).connect() as conn:
            return q.unit_of_registration(conn, reg_id)

    return await asyncio.to_thread(load)


async def deregister_handler(request: web.Request) -> web.Response:
    ctx, user, reg_id, building_id = await _registration_access(request)
    form = await read_form(request)
    zone = request.app[PAGES].rules.zone
    today = today_in(zone, datetime.now(UTC))
    errors = FormErrors()
    departed = parse_day(ctx.t, form, "departed", today, errors)
    reason = text(form, "reason") or "deregistered"
    unit_id = await _unit_of(request, reg_id)
    back = f"/landlord/units/{unit_id}" if unit_id is not None else f"/landlord/buildings/{building_id}"

    async def again(found: FormErrors, status: int) -> web.Response:
        if unit_id is None:
            return await render_building(request, ctx, building_id, errors=found, status=status)
        return await render_unit(request, ctx, unit_id, dereg_errors=(reg_id, found), status=status)

    if departed is None:
        return await again(errors, 400)
    departed_day = departed

    def operation(conn: sa.Connection, now: datetime) -> Outcome:
        return service.deregister(conn, now, actor_of(user), reg_id, departed_at=moment(departed_day, zone, now),
                                  reason=reason[:32])

    try:
        await _apply(request, operation)
    except InvalidInput as exc:
        return await again(from_invalid_input(ctx.t, exc), 400)
    except (Conflict, NotFound) as exc:
        return await again(_conflict(ctx, exc), 409)
    raise _done(back, "deregistered_ok")


async def confirm_handler(request: web.Request) -> web.Response:
    ctx, user, reg_id, building_id = await _registration_access(request)
    scope = service.Scope.of(user.role, user.id)
    try:
        await _apply(request, lambda conn, now: service.confirm_registration(conn, now, actor_of(user), reg_id,
                                                                              user_id=user.id, scope=scope))
    except service.NeedsVerification:
        errors = FormErrors(general=[ctx.t["move.needs_coordinator"]])
        return await render_building(request, ctx, building_id, errors=errors, status=403)
    except (Conflict, NotFound, InvalidInput) as exc:
        return await render_building(request, ctx, building_id, errors=_conflict(ctx, exc), status=409)
    raise _done(f"/landlord/buildings/{building_id}", "confirmed_ok")


async def reject_handler(request: web.Request) -> web.Response:
    ctx, user, reg_id, building_id = await _registration_access(request)
    form = await read_form(request)
    errors = FormErrors()
    reason = required(ctx.t, form, "reason", errors)
    if errors.fields:
        return await render_building(request, ctx, building_id, errors=errors, status=400)
    try:
        await _apply(request, lambda conn, now: service.reject_registration(conn, now, actor_of(user), reg_id,
                                                                             reason=reason[:32]))
    except InvalidInput as exc:
        return await render_building(request, ctx, building_id, errors=from_invalid_input(ctx.t, exc), status=400)
    except (Conflict, NotFound) as exc:
        return await render_building(request, ctx, building_id, errors=_conflict(ctx, exc), status=409)
    raise _done(f"/landlord/buildings/{building_id}", "rejected_ok")


async def departure_handler(request: web.Request) -> web.Response:
    ctx, user = page_user(request, *LANDLORD_ROLES)
    case_id = int(request.match_info["id"])

    def load() -> int | None:
        with read(request).connect() as conn:
            return q.building_of_case(conn, case_id)

    building_id = await require_building(request, ctx, user, await asyncio.to_thread(load))
    form = await read_form(request)
    zone = request.app[PAGES].rules.zone
    today = today_in(zone, datetime.now(UTC))
    errors = FormErrors()
    still_living = text(form, "answer") != "left"
    left_on = None if still_living else parse_day(ctx.t, form, "left_on", today, errors)
    if errors.fields:
        return await render_building(request, ctx, building_id, errors=errors, status=400)

    def operation(conn: sa.Connection, now: datetime) -> Outcome:
        departed = moment(left_on, zone, now) if left_on is not None else None
        return answer_departure(conn, now, actor_of(user), case_id, still_living=still_living, departed_at=departed)

    try:
        await _apply(request, operation)
    except InvalidInput as exc:
        return await render_building(request, ctx, building_id, errors=from_invalid_input(ctx.t, exc), status=400)
    except (Conflict, NotFound) as exc:
        return await render_building(request, ctx, building_id, errors=_conflict(ctx, exc), status=409)
    raise _done(f"/landlord/buildings/{building_id}", "answered_ok")
