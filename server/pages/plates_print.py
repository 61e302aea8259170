"""Printing door plates from the browser (/c/plates): a coordinator picks
one of their grids, or a street all of whose grids are theirs (an admin:
any grid or street), and downloads the A4 PDF that ``rentgate plates
render`` would write. Large selections are left to the command."""

from __future__ import annotations

import asyncio
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from aiohttp import web

from server.access.service import write_transaction
from server.appkeys import ENGINE, SETTINGS
from server.auth.policy import AuthUser, actor_of
from server.db.models import areas, buildings, units
from server.grid.scope import grid_ids_of
from server.pages.forms import read_form, text
from server.pages.grid_common import grid_user, rules_of, run_read
from server.pages.layout import PageContext, esc, message_page, page
from server.plates import collect
from server.plates.appkeys import PLATE_KEYS
from server.plates.errors import PlateError
from server.plates.fonts import find_font
from server.plates.layout import PlateSpec
from server.plates.render_pdf import render_pdf

# About 15 s of rendering in a request; a bigger run is the command's job.
MAX_WEB_UNITS = 3000


@dataclass(frozen=True)
class Printable:
    level: str
    code: str
    name: str
    units: int


def _printables(conn: sa.Connection, user: AuthUser) -> list[Printable]:
    """The grids and streets this user may print, with their unit counts."""
    community = areas.alias("community")
    grid_units = (sa.select(buildings.c.grid_id, sa.func.count(units.c.id).label("n"))
                  .join(units, units.c.building_id == buildings.c.id).group_by(buildings.c.grid_id).subquery())
    rows = conn.execute(
        sa.select(areas.c.id, areas.c.code, areas.c.name, community.c.parent_id.label("street_id"),
                  sa.func.coalesce(grid_units.c.n, 0).label("n"))
        .join(community, community.c.id == areas.c.parent_id)
        .outerjoin(grid_units, grid_units.c.grid_id == areas.c.id)
        .where(areas.c.level == "grid").order_by(areas.c.code)).all()
    mine = None if user.role == "admin" else grid_ids_of(conn, user.id)
    out: list[Printable] = []
    by_street: dict[int, list[tuple[bool, int]]] = {}
    for row in rows:
        by_street.setdefault(row.street_id, []).append((mine is None or row.id in mine, int(row.n)))
        if (mine is None or row.id in mine) and row.n:
            out.append(Printable("grid", row.code, row.name, int(row.n)))
    streets = {r.id: r for r in conn.execute(sa.select(areas.c.id, areas.c.code, areas.c.name)
                                             .where(areas.c.id.in_(list(by_street))))}
    for street_id, grids in sorted(by_street.items(), key=lambda kv: streets[kv[0]].code):
        total = sum(n for _, n in grids)
        # A street only when every grid of it that has units is the user's.
        if total and all(ok for ok, n in grids if n):
            out.append(Printable("street", streets[street_id].code, streets[street_id].name, total))
    return out


def _list(ctx: PageContext, printables: list[Printable]) -> str:
    t = ctx.t
    if not printables:
        return f'<div class="card"><p>{esc(t["plates.none"])}</p></div>'
    items = []
    for p in printables:
        too_big = p.units > MAX_WEB_UNITS
        button = (f'<p class="meta">{esc(t["plates.too_many"].format(n=MAX_WEB_UNITS))}</p>' if too_big else
                  f'<form method="post" action="/c/plates">{ctx.csrf_field()}'
                  f'<input type="hidden" name="level" value="{esc(p.level)}">'
                  f'<input type="hidden" name="code" value="{esc(p.code)}">'
                  f'<button type="submit">{esc(t["plates.download"])}</button></form>')
        items.append(f'<li class="card" data-code="{esc(p.code)}"><strong>{esc(p.name)}</strong> '
                     f'<span class="meta">{esc(t["plates.level." + p.level])} {esc(p.code)} · '
                     f'{esc(t["plates.units"].format(n=p.units))}</span>{button}</li>')
    return f'<p class="meta">{esc(t["plates.hint"])}</p><ul class="plain">{"".join(items)}</ul>'


async def plates_page(request: web.Request) -> web.Response:
    ctx, user = grid_user(request)
    printables = await run_read(request, lambda conn: _printables(conn, user))
    return page(ctx, ctx.t["plates.title"], _list(ctx, printables))


async def plates_download(request: web.Request) -> web.Response:
    ctx, user = grid_user(request)
    form = await read_form(request)
    level, code = text(form, "level"), text(form, "code")
    keyring = request.app[PLATE_KEYS].keyring
    if keyring is None:
        return message_page(ctx, 503, "plates.title", ctx.t["plates.no_keys"])
    allowed = await run_read(request, lambda conn: {(p.level, p.code): p for p in _printables(conn, user)})
    chosen = allowed.get((level, code))
    if chosen is None:
        return message_page(ctx, 403, "forbidden.title", ctx.t["plates.not_yours"])
    if chosen.units > MAX_WEB_UNITS:
        return message_page(ctx, 413, "plates.title", ctx.t["plates.too_many"].format(n=MAX_WEB_UNITS))
    settings = request.app[SETTINGS]
    rules = rules_of(request)
    selection = collect.Selection(grid=code) if level == "grid" else collect.Selection(street=code)

    def render() -> bytes:
        font = find_font()
        with write_transaction(request.app[ENGINE]) as conn:
            rows = collect.select_units(conn, selection)
            plates = collect.issue_plates(conn, datetime.now(UTC), keyring, rows, public_url=settings.public_url,
                                          valid_days=rules.plate_valid_days, actor=actor_of(user))
        out = io.BytesIO()
        render_pdf(plates, PlateSpec(), out, font)
        return out.getvalue()

    try:
        pdf = await asyncio.to_thread(render)
    except PlateError as exc:
        return message_page(ctx, 503, "plates.title", f'{ctx.t["plates.failed"]}{exc}')
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", code)
    return web.Response(body=pdf, content_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="plates-{level}-{safe}.pdf"',
        "Cache-Control": "no-store"})
