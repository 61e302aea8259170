"""GET /landlord, /landlord/buildings/{id}, /landlord/units/{id}: what a
landlord (or an administrator, or a coordinator) sees of their buildings."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiohttp import web

from server.pages import queries_landlord as q
from server.pages import terminals
from server.pages.forms import FormErrors, today_in
from server.pages.guard import LANDLORD_ROLES, page_not_found, page_user, read, require_building
from server.pages.landlord_views import building_page, buildings_list, unit_page
from server.pages.layout import PageContext, flash, page
from server.pages.state import PAGES


async def buildings_handler(request: web.Request) -> web.Response:
    ctx, user = page_user(request, *LANDLORD_ROLES)

    def load() -> list[q.Row]:
        with read(request).connect() as conn:
            return q.list_buildings(conn, user)

    rows = await asyncio.to_thread(load)
    return page(ctx, ctx.t["buildings"], flash(ctx, request) + buildings_list(ctx, rows))


async def render_building(request: web.Request, ctx: PageContext, building_id: int, *,
                          errors: FormErrors | None = None, status: int = 200) -> web.Response:
    now = datetime.now(UTC)

    def load() -> tuple[q.Row | None, list[q.Row], list[q.Row], list[q.Row], list[q.Row]]:
        with read(request).connect() as conn:
            found = q.building(conn, building_id)
            if found is None:
                return None, [], [], [], []
            return (found, q.building_units(conn, building_id),
                    q.pending_declarations(conn, building_id=building_id, viewer=ctx.user),
                    q.open_cases(conn, building_id), q.moved_out(conn, now, building_id=building_id))

    found, units, pending, cases, moved = await asyncio.to_thread(load)
    if found is None:
        raise page_not_found(ctx)
    zone = request.app[PAGES].rules.zone
    body = building_page(ctx, found, units, pending, cases, zone, today_in(zone, now), errors,
                         flash(ctx, request), moved=moved) + terminals.link(ctx, building_id)
    return page(ctx, found["name"], body, status=status)


async def building_handler(request: web.Request) -> web.Response:
    ctx, user = page_user(request, *LANDLORD_ROLES)
    building_id = await require_building(request, ctx, user, int(request.match_info["id"]))
    return await render_building(request, ctx, building_id)


async def unit_building(request: web.Request, ctx: PageContext, unit_id: int) -> int:
    """The unit's building, checked against the user; 404/403 pages."""
    def load() -> q.Row | None:
        with read(request).connect() as conn:
            return q.unit(conn, unit_id)

    found = await asyncio.to_thread(load)
    assert ctx.user is not None
    return await require_building(request, ctx, ctx.user, found["building_id"] if found else None)


async def render_unit(request: web.Request, ctx: PageContext, unit_id: int, *, values: dict[str, str] | None = None,
                      errors: FormErrors | None = None, dereg_errors: tuple[int, FormErrors] | None = None,
                      status: int = 200) -> web.Response:
    now = datetime.now(UTC)

    def load() -> tuple[q.Row | None, list[q.Row], list[q.Row], list[q.Row]]:
        with read(request).connect() as conn:
            found = q.unit(conn, unit_id)
            if found is None:
                return None, [], [], []
            return (found, q.occupants(conn, unit_id), q.pending_declarations(conn, unit_id=unit_id, viewer=ctx.user),
                    q.moved_out(conn, now, unit_id=unit_id))

    found, occupants, pending, moved = await asyncio.to_thread(load)
    if found is None:
        raise page_not_found(ctx)
    zone = request.app[PAGES].rules.zone
    body = unit_page(ctx, found, occupants, pending, zone, today_in(zone, now), values=values,
                     errors=errors, dereg_errors=dereg_errors, flash=flash(ctx, request), moved=moved)
    return page(ctx, f'{ctx.t["unit"]} {found["number"]}', body, status=status)


async def unit_handler(request: web.Request) -> web.Response:
    ctx, _ = page_user(request, *LANDLORD_ROLES)
    unit_id = int(request.match_info["id"])
    await unit_building(request, ctx, unit_id)
    return await render_unit(request, ctx, unit_id)
