"""The public pages a door plate's QR code opens, no login needed:

- ``GET /p/{token}``: the address, the grade as a colour banner, the
  landlord's contact masked, and two actions. Never who lives there. A
  logged-in administrator or coordinator who may work the unit goes straight
  to the coordinator's unit page (303 /c/units/{id}).
- ``GET/POST /p/{token}/declare``: "I live here", a self-declaration
  (server/pages/declare.py) that waits for confirmation.
- ``GET/POST /p/{token}/report``: report a problem (server/pages/plate_report.py).

A refused token (malformed, forged, altered, expired, revoked, unknown) gets
a page that says what to do (404 or 410), and a logged attempt within the
budget of server/plates/appkeys.RejectionBudget; never a server error."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from server.auth.policy import can_manage_building
from server.db.models import buildings, units, users
from server.db.read_pool import read_only, with_retry
from server.pages import declare
from server.pages.layout import GRADE_COLOURS, PageContext, context, esc, page
from server.pages.scan_common import SCAN_CSS, WORK_ROLES, mask_contact_phone, mask_person_name, scan_headers
from server.plates.appkeys import PLATE_KEYS
from server.plates.errors import TokenRejected
from server.plates.refusals import record_refusal, status_for
from server.plates.service import resolve

log = logging.getLogger(__name__)
Row = dict[str, Any]


@dataclass(frozen=True)
class Scanned:
    token: str
    plate_id: int
    unit: Row
    may_work: bool


def public_unit(conn: sa.Connection, unit_id: int) -> Row | None:
    """What the public page may show of a unit: address, grade, landlord.
    Nothing about occupants is selected."""
    u, b, us = units.c, buildings.c, users.c
    row = conn.execute(
        sa.select(u.id, u.building_id, u.number, u.grade, b.name.label("building_name"), b.address,
                  b.landlord_name, b.landlord_phone, us.display_name.label("landlord_user_name"),
                  us.phone.label("landlord_user_phone"))
        .join(buildings, b.id == u.building_id).join(users, us.id == b.landlord_user_id, isouter=True)
        .where(u.id == unit_id)).mappings().first()
    return dict(row) if row is not None else None


async def scan(request: web.Request, ctx: PageContext) -> Scanned | web.Response:
    """The plate's unit, or the page to answer with instead."""
    token = request.match_info["token"]
    plate_keys = request.app[PLATE_KEYS]
    keyring = plate_keys.keyring
    if keyring is None:
        body = f'<div class="card"><p>{esc(ctx.t["scan.unavailable"])}</p></div>'
        return scan_headers(page(ctx, ctx.t["unavailable.title"], body, status=503))
    user = ctx.user

    def read() -> Scanned | TokenRejected:
        with read_only(request.app) as conn:
            try:
                resolved = resolve(conn, keyring, token, datetime.now(UTC))
            except TokenRejected as exc:
                return exc
            unit = public_unit(conn, resolved.unit_id)
            if unit is None:
                return TokenRejected("unknown_plate", "the plate's unit no longer exists", resolved.plate_id)
            may_work = (user is not None and user.role in WORK_ROLES
                        and can_manage_building(conn, user, unit["building_id"]))
            return Scanned(token, resolved.plate_id, unit, may_work)

    found = await asyncio.to_thread(with_retry, read)
    if isinstance(found, TokenRejected):
        return await refuse(request, ctx, token, found)
    return found


async def refuse(request: web.Request, ctx: PageContext, token: str, rejected: TokenRejected) -> web.Response:
    await record_refusal(request, token, rejected)
    status = status_for(rejected)
    t = ctx.t
    body = (f'<div class="card refused" data-reason="{esc(rejected.reason)}">'
            f'<p>{esc(t["scan.refused." + rejected.reason])}</p><p class="meta">{esc(t["scan.refused.help"])}</p>'
            f'</div>')
    return scan_headers(page(ctx, t["scan.refused.title"], body, status=status))


def _grade_banner(ctx: PageContext, grade: str | None) -> str:
    t = ctx.t
    if grade not in GRADE_COLOURS:
        return f'<div class="grade-banner none" data-grade="">{esc(t["scan.grade"])}{esc(t["grade.none"])}</div>'
    name = t["grade." + grade]
    chinese = "" if ctx.lang == "zh" else f" ({esc(t['scan.grade_zh.' + grade])})"
    return (f'<div class="grade-banner grade-{grade}" data-grade="{grade}" style="background:{GRADE_COLOURS[grade]}">'
            f'{esc(t["scan.grade"])}{esc(name)}{chinese}</div>')


def address_of(unit: Row) -> str:
    return f'{unit["address"] or unit["building_name"]} {unit["number"]}'


def _landlord(ctx: PageContext, unit: Row) -> str:
    t = ctx.t
    name = mask_person_name(unit["landlord_name"] or unit["landlord_user_name"])
    phone = mask_contact_phone(unit["landlord_phone"] or unit["landlord_user_phone"])
    if not name and not phone:
        return f'<p class="landlord meta">{esc(t["scan.no_landlord"])}</p>'
    parts = " · ".join(p for p in (name, phone) if p)
    return f'<p class="landlord">{esc(t["scan.landlord"])}{esc(t["sep"])}<span class="contact">{esc(parts)}</span></p>'


def _public_body(ctx: PageContext, scanned: Scanned) -> str:
    t, unit, base = ctx.t, scanned.unit, f"/p/{scanned.token}"
    return (f'{SCAN_CSS}{_grade_banner(ctx, unit["grade"])}'
            f'<div class="card plate"><p class="address">{esc(address_of(unit))}</p>{_landlord(ctx, unit)}</div>'
            f'<a class="button big declare-link" href="{esc(base)}/declare">{esc(t["scan.live_here"])}</a>'
            f'<a class="button big secondary report-link" href="{esc(base)}/report">{esc(t["scan.report"])}</a>'
            f'<p class="meta">{esc(t["scan.privacy"])}</p>')


async def public_page(request: web.Request) -> web.Response:
    ctx = context(request)
    found = await scan(request, ctx)
    if isinstance(found, web.Response):
        return found
    if found.may_work:
        raise web.HTTPSeeOther(f"/c/units/{found.unit['id']}", headers=_redirect_headers())
    return scan_headers(page(ctx, ctx.t["scan.title"], _public_body(ctx, found)))


def _redirect_headers() -> dict[str, str]:
    return {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _declare_unit(unit: Row) -> Row:
    return {"id": unit["id"], "building_name": unit["address"] or unit["building_name"], "number": unit["number"]}


async def declare_page(request: web.Request) -> web.Response:
    ctx = context(request)
    found = await scan(request, ctx)
    if isinstance(found, web.Response):
        return found
    response = declare.form_page(request, ctx, _declare_unit(found.unit), f"/p/{found.token}/declare")
    return scan_headers(response)


async def declare_submit(request: web.Request) -> web.Response:
    ctx = context(request)
    found = await scan(request, ctx)
    if isinstance(found, web.Response):
        return found
    response = await declare.submit(request, ctx, _declare_unit(found.unit), f"/p/{found.token}/declare",
                                    actor=f"tenant:plate:{found.plate_id}")
    return scan_headers(response)
