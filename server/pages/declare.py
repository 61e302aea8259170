"""A tenant's self-declaration, reached from a door plate
(``/p/{token}/declare``, server/pages/plate_public.py). It creates a pending
registration that waits for the landlord's or a coordinator's confirmation.

The token-less ``/declare/{unit_id}`` of the first pages is gone: anyone
could declare at any unit id by counting. It now answers 404 with a page that
says to scan the door plate."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from aiohttp import web

from server.appkeys import ENGINE
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
from server.pages.layout import PageContext, context, esc, page
from server.pages.state import PAGES
from server.plates.declare_api import DECLARATION_LIMITER
from server.registry import service
from server.web.errors import Conflict, InvalidInput
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)
Row = dict[str, object]


def _form(ctx: PageContext, action: str, today: str, values: dict[str, str], errors: FormErrors | None) -> str:
    t = ctx.t
    arrived = input_field(ctx, "arrived", value=values.get("arrived", today), kind="date", errors=errors,
                          extra=f"required max={today}")
    return (f'<p>{esc(t["declare.intro"])}</p>'
            f'<form class="card declare" method="post" action="{esc(action)}" novalidate>{ctx.csrf_field()}'
            f'{errors_box(ctx, errors)}'
            f'{input_field(ctx, "id_number", errors=errors, extra="autocomplete=off maxlength=18 required")}'
            f'{input_field(ctx, "name", value=values.get("name", ""), errors=errors, extra="required")}'
            f'{input_field(ctx, "phone", value=values.get("phone", ""), kind="tel", errors=errors)}'
            f'{input_field(ctx, "origin", value=values.get("origin", ""), errors=errors)}'
            f'{arrived}<p><button type="submit">{esc(t["declare.submit"])}</button></p></form>')


def title(ctx: PageContext, unit: Row) -> str:
    return f'{ctx.t["declare.title"]} · {unit["building_name"]} {unit["number"]}'


def form_page(request: web.Request, ctx: PageContext, unit: Row, action: str) -> web.Response:
    """GET: the empty form, or after a declaration (``?sent=1``) the notice
    that it waits for confirmation."""
    if request.query.get("sent") == "1":
        body = (f'<div class="waiting" role="status"><p>{esc(ctx.t["declare.done"])}</p>'
                f'<p class="state">{esc(ctx.t["declare.waiting"])}</p></div>')
        return page(ctx, title(ctx, unit), body)
    today = today_in(request.app[PAGES].rules.zone, datetime.now(UTC)).isoformat()
    return page(ctx, title(ctx, unit), _form(ctx, action, today, {}, None))


async def submit(request: web.Request, ctx: PageContext, unit: Row, action: str, actor: str) -> web.Response:
    """POST: a pending registration at ``unit``, then 303 to ``action?sent=1``;
    the form again (400/409/429/503) with the reason otherwise. An identity
    number is never written back into the page."""
    unit_id = int(str(unit["id"]))
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
        return page(ctx, title(ctx, unit), _form(ctx, action, today.isoformat(), values, found), status=status)

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
            outcome = service.declare(conn, now, actor, vault, unit_id=unit_id, person=person,
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
    raise web.HTTPSeeOther(f"{action}?sent=1", headers={"Referrer-Policy": "no-referrer"})


def _gone(request: web.Request) -> web.Response:
    ctx = context(request)
    body = f'<div class="card"><p>{esc(ctx.t["scan.declare_moved"])}</p></div>'
    return page(ctx, ctx.t["declare.title"], body, status=404)


async def declare_page(request: web.Request) -> web.Response:
    """The old token-less address: the declaration needs the door plate now."""
    return _gone(request)


async def declare_submit(request: web.Request) -> web.Response:
    return _gone(request)
