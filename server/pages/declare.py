"""/declare/{unit_id}: a tenant's self-declaration, public (the door-plate
work adds signed tokens). It creates a pending registration that waits for
the landlord's or a coordinator's confirmation."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from aiohttp import web

from server.access.errors import Conflict, InvalidInput
from server.access.service import write_transaction
from server.appkeys import ENGINE
from server.pages import queries_landlord as q
from server.pages.forms import (
    FormErrors,
    check_id_number,
    errors_box,
    from_invalid_input,
    input_field,
    moment,
    parse_day,
    read_form,
    required,
    text,
    today_in,
)
from server.pages.guard import page_not_found
from server.pages.layout import PageContext, context, esc, page
from server.pages.state import PAGES
from server.registry import service
from server.registry.routes import DECLARATION_LIMITER

log = logging.getLogger(__name__)
ACTOR = "tenant:declare-page"


def _form(ctx: PageContext, unit_id: int, today: str, values: dict[str, str], errors: FormErrors | None) -> str:
    t = ctx.t
    arrived = input_field(ctx, "arrived", value=values.get("arrived", today), kind="date", errors=errors,
                          extra=f"required max={today}")
    return (f'<p>{esc(t["declare.intro"])}</p>'
            f'<form class="card declare" method="post" action="/declare/{unit_id}" novalidate>{ctx.csrf_field()}'
            f'{errors_box(ctx, errors)}'
            f'{input_field(ctx, "id_number", errors=errors, extra="autocomplete=off maxlength=18 required")}'
            f'{input_field(ctx, "name", value=values.get("name", ""), errors=errors, extra="required")}'
            f'{input_field(ctx, "phone", value=values.get("phone", ""), kind="tel", errors=errors)}'
            f'{input_field(ctx, "origin", value=values.get("origin", ""), errors=errors)}'
            f'{arrived}<p><button type="submit">{esc(t["declare.submit"])}</button></p></form>')


async def _unit(request: web.Request, ctx: PageContext, unit_id: int) -> q.Row:
    def load() -> q.Row | None:
        with request.app[ENGINE].connect() as conn:
            return q.unit(conn, unit_id)

    found = await asyncio.to_thread(load)
    if found is None:
        raise page_not_found(ctx)
    return found


def _title(ctx: PageContext, unit: q.Row) -> str:
    return f'{ctx.t["declare.title"]} · {unit["building_name"]} {unit["number"]}'


async def declare_page(request: web.Request) -> web.Response:
    ctx = context(request)
    unit_id = int(request.match_info["id"])
    unit = await _unit(request, ctx, unit_id)
    if request.query.get("sent") == "1":
        body = (f'<div class="waiting" role="status"><p>{esc(ctx.t["declare.done"])}</p>'
                f'<p class="state">{esc(ctx.t["declare.waiting"])}</p></div>')
        return page(ctx, _title(ctx, unit), body)
    zone = request.app[PAGES].rules.zone
    today = today_in(zone, datetime.now(UTC)).isoformat()
    return page(ctx, _title(ctx, unit), _form(ctx, unit_id, today, {}, None))


async def declare_submit(request: web.Request) -> web.Response:
    ctx = context(request)
    unit_id = int(request.match_info["id"])
    unit = await _unit(request, ctx, unit_id)
    state = request.app[PAGES]
    zone = state.rules.zone
    today = today_in(zone, datetime.now(UTC))
    form = await read_form(request)
    errors = FormErrors()
    id_number = text(form, "id_number")
    check_id_number(ctx.t, id_number, today, errors)
    name = required(ctx.t, form, "name", errors)
    arrived = parse_day(ctx.t, form, "arrived", today, errors)
    values = {k: text(form, k) for k in ("name", "phone", "origin", "arrived")}

    def again(found: FormErrors, status: int) -> web.Response:
        return page(ctx, _title(ctx, unit), _form(ctx, unit_id, today.isoformat(), values, found), status=status)

    if state.vault is None:
        errors.general.append(ctx.t["error.vault"])
        return again(errors, 503)
    if errors.fields or arrived is None:
        return again(errors, 400)
    # The same per-address budget as POST /api/v1/declarations: the page is
    # public too, and a form is no cheaper to abuse than the API.
    if DECLARATION_LIMITER in request.app and request.app[DECLARATION_LIMITER].hit(request.remote or "unknown"):
        return again(FormErrors(general=[ctx.t["declare.too_many"]]), 429)
    vault, arrived_day = state.vault, arrived
    person = service.PersonFields(id_number=id_number, name=name, phone=text(form, "phone") or None,
                                  origin=text(form, "origin") or None)

    def write() -> int:
        now = datetime.now(UTC)
        with write_transaction(request.app[ENGINE]) as conn:
            outcome = service.declare(conn, now, ACTOR, vault, unit_id=unit_id, person=person,
                                      arrived_at=moment(arrived_day, zone, now))
            return int(outcome.body["id"])

    try:
        reg_id = await asyncio.to_thread(write)
    except InvalidInput as exc:
        return again(from_invalid_input(ctx.t, exc), 400)
    except (Conflict, sa.exc.IntegrityError) as exc:
        # Public page: say no more about an existing registration than that it exists.
        log.info("unit %s: self-declaration refused: %s", unit_id, str(exc).split("\n")[0])
        return again(FormErrors(general=[ctx.t["declare.conflict"]]), 409)
    log.info("unit %s: self-declaration %s", unit_id, reg_id)
    raise web.HTTPSeeOther(f"/declare/{unit_id}?sent=1")
