"""Printing door plates from the browser (/c/plates): a coordinator picks
one of their grids, or a street all of whose grids are theirs (an admin:
any grid or street), and downloads the A4 PDF that ``rentgate plates
render`` would write. Large selections are left to the command.

The codes point at the server's RENTGATE_PUBLIC_URL. When that is an
address phones outside the office cannot reach (unset, so 127.0.0.1;
192.168.x.x; a .lan name), the page says so and a download needs a ticked
acknowledgement, the page's counterpart of ``--allow-private-url``; a URL
that cannot go on a plate at all prints nothing."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from aiohttp import web

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
from server.plates.public_url import PROBLEMS, REASONS, BadPublicUrl, PublicUrl, check_public_url
from server.plates.render_pdf import render_pdf
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)
# About 15 s of rendering in a request; a bigger run is the command's job.
MAX_WEB_UNITS = 3000
ACK_FIELD = "ack_private_url"


@dataclass(frozen=True)
class UrlState:
    """The public URL as this page sees it: ``checked`` when it can go on a
    plate (maybe not a public one), else ``problem`` (a PROBLEMS key)."""

    url: str
    checked: PublicUrl | None
    problem: str | None

    @property
    def needs_ack(self) -> bool:
        return self.checked is not None and self.checked.not_public is not None


def url_state(public_url: str) -> UrlState:
    try:
        return UrlState(public_url, check_public_url(public_url), None)
    except BadPublicUrl as exc:
        return UrlState(exc.url, None, exc.problem)


def _url_notice(ctx: PageContext, state: UrlState) -> str:
    """The warning above the list, or nothing for an https public URL."""
    t, which = ctx.t, 0 if ctx.lang == "zh" else 1
    if state.problem is not None:
        text = t["plates.url_bad"].format(url=state.url, why=PROBLEMS[state.problem][which])
    elif state.checked is not None and state.checked.not_public is not None:
        text = t["plates.url_private"].format(url=state.checked.url, why=REASONS[state.checked.not_public][which])
    elif state.checked is not None and state.checked.insecure:
        return f'<p class="meta" data-url-notice="http">{esc(t["plates.url_http"].format(url=state.checked.url))}</p>'
    else:
        return ""
    return f'<div class="errors" data-url-notice="private" role="alert">{esc(text)}</div>'


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


def _url_notice_text(ctx: PageContext, state: UrlState) -> str:
    which = 0 if ctx.lang == "zh" else 1
    return ctx.t["plates.url_bad"].format(url=state.url, why=PROBLEMS[state.problem or "missing"][which])


def _list(ctx: PageContext, printables: list[Printable], state: UrlState) -> str:
    t = ctx.t
    notice = _url_notice(ctx, state)
    if not printables:
        return notice + f'<div class="card"><p>{esc(t["plates.none"])}</p></div>'
    # Ticked per download: the form is what is posted.
    ack = (f'<label class="check"><input type="checkbox" name="{ACK_FIELD}" value="1" required style="width:auto"> '
           f'{esc(t["plates.url_ack"])}</label>' if state.needs_ack else "")
    items = []
    for p in printables:
        too_big = p.units > MAX_WEB_UNITS
        button = (f'<p class="meta">{esc(t["plates.too_many"].format(n=MAX_WEB_UNITS))}</p>' if too_big else
                  "" if state.problem is not None else
                  f'<form method="post" action="/c/plates">{ctx.csrf_field()}'
                  f'<input type="hidden" name="level" value="{esc(p.level)}">'
                  f'<input type="hidden" name="code" value="{esc(p.code)}">{ack}'
                  f'<button type="submit">{esc(t["plates.download"])}</button></form>')
        items.append(f'<li class="card" data-code="{esc(p.code)}"><strong>{esc(p.name)}</strong> '
                     f'<span class="meta">{esc(t["plates.level." + p.level])} {esc(p.code)} · '
                     f'{esc(t["plates.units"].format(n=p.units))}</span>{button}</li>')
    return notice + f'<p class="meta">{esc(t["plates.hint"])}</p><ul class="plain">{"".join(items)}</ul>'


async def plates_page(request: web.Request) -> web.Response:
    ctx, user = grid_user(request)
    printables = await run_read(request, lambda conn: _printables(conn, user))
    return page(ctx, ctx.t["plates.title"], _list(ctx, printables, url_state(request.app[SETTINGS].public_url)))


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
    state = url_state(settings.public_url)
    if state.problem is not None:
        return message_page(ctx, 503, "plates.title", _url_notice_text(ctx, state))
    if state.needs_ack and form.get(ACK_FIELD) != "1":
        return message_page(ctx, 400, "plates.title", ctx.t["plates.url_ack_needed"])
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
    if state.needs_ack:
        # Printed on purpose for a closed network: on record for whoever
        # wonders later why the plates do not scan from outside.
        log.warning("plates for %s %s printed by %s with a non-public URL %s (acknowledged)", level, code,
                    actor_of(user), settings.public_url)
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", code)
    return web.Response(body=pdf, content_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="plates-{level}-{safe}.pdf"',
        "Cache-Control": "no-store"})
