"""A building's terminals (gateways) for its landlord (or an administrator):
which are installed, whether they are online and whether the face and card
terminals behind them hold the current door list, "add a terminal" (a
one-time code, its QR and the command to type, with a status line that
turns to 已连接 / online by itself when the gateway connects) and "stop
this terminal" (revocation, after a confirmation step). Also the public
page a code's QR points at (``/e/{code}``), which explains what the code
is for and says nothing of whether it is valid. docs/enrolment.md."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from rentgate import wire
from server.appkeys import ENGINE, SETTINGS
from server.auth.policy import allow, public
from server.db.models import buildings, gateways
from server.fleet import enrol, enrol_routes, revoke
from server.fleet.errors import FleetError
from server.pages.fleet import DOOR_TERMINALS_CSS, door_terminals
from server.pages.forms import FormErrors, errors_box, read_form
from server.pages.gateway_config import config_url
from server.pages.guard import page_not_found, page_user
from server.pages.layout import PageContext, context, esc, page, when
from server.pages.state import PAGES
from server.pages.texts_terminals import TEXTS
from server.web.errors import Conflict, NotFound

log = logging.getLogger(__name__)

ROLES = ("admin", "landlord")
Row = dict[str, Any]
POLL_MS = 2000
CSS = """<style>
.enrol-code{font:700 2rem/1.2 ui-monospace,Menlo,Consolas,monospace;letter-spacing:.06em;white-space:nowrap;
margin:6px 0}
.qr svg{max-width:260px;margin:8px 0;background:#fff}
pre.command{white-space:pre-wrap;overflow-wrap:anywhere;background:#f1f3f4;padding:10px;border-radius:6px;
font-size:.95rem;margin:6px 0} pre.command span{white-space:nowrap}
.enrol-status{font-size:1.1rem;font-weight:600;padding:10px;border-radius:6px;background:#fef7e0}
.enrol-status[data-state=online]{background:#e6f4ea;color:#137333}
.enrol-status[data-state=expired],.enrol-status[data-state=cancelled]{background:#fce8e6;color:#a50e0e}
.terminal .state{font-weight:600}
""" + DOOR_TERMINALS_CSS + """
</style>"""
# Polls the enrolment's state every two seconds until it is final; counts
# the minutes left from the server's figure, not the phone's clock.
SCRIPT = """<script>
(function(){
var box=document.getElementById('enrol-status');if(!box){return;}
var left=document.getElementById('enrol-left');
var ends=Date.now()+1000*Number(box.getAttribute('data-left-s'));
function say(state){var words=box.getAttribute('data-say-'+state);if(words){box.textContent=words;}
box.setAttribute('data-state',state);}
function tick(){if(!left){return;}var m=Math.ceil((ends-Date.now())/60000);
left.textContent=m>0?left.getAttribute('data-text').replace('{minutes}',m):left.getAttribute('data-expired');}
function poll(){fetch(box.getAttribute('data-poll'),{credentials:'same-origin',cache:'no-store',
headers:{'Accept':'application/json'}}).then(function(r){if(!r.ok){throw new Error(String(r.status));}
return r.json();}).then(function(d){say(d.state);
if(d.state==='online'||d.state==='expired'||d.state==='cancelled'){if(left){left.hidden=true;}return;}
setTimeout(poll,%d);}).catch(function(){say('lost');setTimeout(poll,%d);});}
tick();setInterval(tick,5000);setTimeout(poll,%d);
})();
</script>""" % (POLL_MS, POLL_MS, POLL_MS)


def texts(ctx: PageContext) -> dict[str, str]:
    return TEXTS[ctx.lang]


def link(ctx: PageContext, building_id: int) -> str:
    """The way from the building's page to its terminals (landlords and administrators)."""
    if ctx.user is None or ctx.user.role not in ROLES:
        return ""
    return (f'<p><a class="button secondary terminals" href="/landlord/buildings/{building_id}/terminals">'
            f'{esc(texts(ctx)["link"])}</a></p>')


def _minutes_left(expires_at: datetime, now: datetime) -> int:
    return max(0, math.ceil((expires_at - now).total_seconds() / 60))


# --------------------------------------------------------------------------- reading


def _building(conn: sa.Connection, building_id: int) -> Row | None:
    b = buildings.c
    row = conn.execute(sa.select(b.id, b.name, b.address).where(b.id == building_id)).mappings().first()
    return dict(row) if row is not None else None


def _gateways(conn: sa.Connection, building_id: int) -> list[Row]:
    g = gateways.c
    rows = conn.execute(sa.select(g.id, g.hostname, g.online, g.status_at, g.last_seen, g.enrolled_at,
                                  g.revoked_at, g.devices_online, g.devices_total, g.terminals_health,
                                  g.allowlist_version)
                        .where(g.building_id == building_id)
                        .order_by(g.revoked_at.is_not(None), g.enrolled_at.desc(), g.id))
    return [dict(r) for r in rows.mappings()]


def _state(row: Row, now: datetime, offline_after_s: float) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["status_at"] is None:
        return "never"
    fresh = now - row["last_seen"] <= timedelta(seconds=offline_after_s)
    return "online" if row["online"] and fresh else "offline"


async def _load(request: web.Request, building_id: int) -> tuple[Row | None, list[Row], list[Row]]:
    def load() -> tuple[Row | None, list[Row], list[Row]]:
        with request.app[ENGINE].connect() as conn:
            found = _building(conn, building_id)
            if found is None:
                return None, [], []
            return found, _gateways(conn, building_id), enrol.live_codes(conn, datetime.now(UTC), building_id)
    return await asyncio.to_thread(load)


# --------------------------------------------------------------------------- rendering


def _terminal(ctx: PageContext, row: Row, now: datetime, request: web.Request) -> str:
    tt, zone = texts(ctx), request.app[PAGES].rules.zone
    state = _state(row, now, request.app[SETTINGS].fleet_offline_after_s)
    name = row["hostname"] or row["id"]
    heard = (f'{esc(tt["heard"])}{esc(ctx.t["sep"])}{esc(when(ctx.t, row["last_seen"], zone, now))}'
             if row["status_at"] is not None else esc(tt["never_heard"]))
    lines = [f'<h3>{esc(name)}</h3>',
             f'<div class="state" data-state="{state}">{esc(tt["state." + state])}</div>',
             f'<div class="meta">{heard}</div>']
    if row["devices_total"] is not None and row["status_at"] is not None:
        devices = tt["devices"].format(online=row["devices_online"] or 0, total=row["devices_total"])
        lines.append(f'<div class="meta">{esc(devices)}</div>')
        # Face and card terminals that open the door from their own list: a
        # landlord sees here, as on the fleet page, which do not hold the
        # current one (a deregistered tenant may still get in there).
        # An offline gateway's report is old news: said so, not shown as now.
        block = door_terminals(ctx.t, row) if state != "revoked" else ""
        if block and state == "offline":
            block = f'<div class="meta as-last-reported">{esc(tt["as_last_reported"])}</div>{block}'
        lines.append(block)
    if row["enrolled_at"] is not None:
        lines.append(f'<div class="meta">{esc(tt["enrolled"])}{esc(ctx.t["sep"])}'
                     f'{esc(when(ctx.t, row["enrolled_at"], zone, now))}</div>')
    if state != "revoked":
        lines.append(f'<div class="meta"><a class="configure" href="{esc(config_url(row["id"]))}">'
                     f'{esc(tt["configure"])}</a></div>')
        lines.append(f'<details class="stop"><summary>{esc(tt["stop"])}</summary><p>{esc(tt["stop_explain"])}</p>'
                     f'<form method="post" action="/landlord/gateways/{esc(row["id"])}/revoke">{ctx.csrf_field()}'
                     f'<button type="submit" class="danger stop-confirm">{esc(tt["stop_confirm"])}</button>'
                     f'</form></details>')
    return f'<div class="card terminal" data-state="{state}">{"".join(lines)}</div>'


def _codes(ctx: PageContext, codes: list[Row], now: datetime) -> str:
    if not codes:
        return ""
    tt = texts(ctx)
    items = []
    for c in codes:
        left = tt["code_hidden"].format(minutes=_minutes_left(c["expires_at"], now))
        items.append(f'<div class="card live-code"><div>{esc(left)}</div>'
                     f'<form method="post" action="/landlord/enrolments/{int(c["id"])}/cancel">{ctx.csrf_field()}'
                     f'<button type="submit" class="secondary cancel-code">{esc(tt["cancel"])}</button></form></div>')
    return f'<h2>{esc(tt["codes"])}</h2>{"".join(items)}'


def _flash(ctx: PageContext, request: web.Request) -> str:
    key = request.query.get("ok", "")
    if key in ("stopped_ok", "cancelled_ok"):
        return f'<div class="flash" role="status">{esc(texts(ctx)[key])}</div>'
    return ""


async def _render_list(request: web.Request, ctx: PageContext, building_id: int, *,
                       errors: FormErrors | None = None, status: int = 200, retry: str | None = None) -> web.Response:
    found, rows, codes = await _load(request, building_id)
    if found is None:
        raise page_not_found(ctx)
    tt, now = texts(ctx), datetime.now(UTC)
    listed = "".join(_terminal(ctx, r, now, request) for r in rows) or f'<div class="card meta">{esc(tt["none"])}</div>'
    add = (f'<form class="card add-terminal" method="post" action="/landlord/buildings/{building_id}/terminals">'
           f'{ctx.csrf_field()}<p class="meta">{esc(tt["add_hint"])}</p>'
           f'<button type="submit" class="add">{esc(tt["add"])}</button></form>')
    again = (f'<form method="post" action="/landlord/gateways/{esc(retry)}/revoke">{ctx.csrf_field()}'
             f'<button type="submit" class="danger stop-again">{esc(tt["stop_again"])}</button></form>'
             if retry else "")
    body = (f'{CSS}{_flash(ctx, request)}{errors_box(ctx, errors)}{again}<div class="meta">{esc(found["name"])}</div>'
            f'<p>{esc(tt["intro"])}</p>{add}{_codes(ctx, codes, now)}'
            f'<h2>{esc(tt["installed"])}</h2>{listed}'
            f'<p><a href="/landlord/buildings/{building_id}">{esc(tt["back_building"])}</a></p>')
    return page(ctx, tt["title"], body, status=status)


def _new_code_page(ctx: PageContext, request: web.Request, building_id: int, made: Row) -> web.Response:
    tt, now = texts(ctx), datetime.now(UTC)
    server = request.app[SETTINGS].public_url.rstrip("/")
    left_s = max(0, int((made["expires_at"] - now).total_seconds()))
    minutes = _minutes_left(made["expires_at"], now)
    status = (f'<p id="enrol-status" class="enrol-status" role="status" aria-live="polite" data-state="waiting" '
              f'data-poll="/api/v1/enrolments/{int(made["enrolment"])}" data-left-s="{left_s}" '
              + "".join(f'data-say-{s}="{esc(tt["status." + s])}" '
                        for s in ("waiting", "enrolled", "online", "expired", "cancelled", "lost"))
              + f'>{esc(tt["status.waiting"])}</p>')
    body = (f'{CSS}<div class="card new-code">'
            f'<div class="meta">{esc(tt["new.code"])}</div>'
            f'<div class="enrol-code" id="enrol-code">{esc(made["code"])}</div>'
            f'<div class="meta" id="enrol-left" data-text="{esc(tt["new.left"])}" '
            f'data-expired="{esc(tt["new.expired_now"])}">{esc(tt["new.left"].format(minutes=minutes))}</div>'
            f'<div class="qr" role="img" aria-label="{esc(tt["new.qr"])}">{made["qr_svg"]}</div>'
            f'<p>{esc(tt["new.step1"])}</p>'
            f'<pre class="command" id="enrol-command">rentgate gateway enroll <span>{esc(made["code"])}</span> --server '
            f'{esc(server)}</pre>'
            f'<p class="meta">{esc(tt["new.once"])}</p>'
            f'{status}<p class="meta">{esc(tt["new.step2"])}</p>'
            f'<noscript><p class="meta">{esc(tt["new.noscript"])}</p></noscript></div>'
            f'<form method="post" action="/landlord/enrolments/{int(made["enrolment"])}/cancel">{ctx.csrf_field()}'
            f'<button type="submit" class="secondary cancel-code">{esc(tt["cancel"])}</button></form>'
            f'<p><a href="/landlord/buildings/{building_id}/terminals">{esc(tt["back"])}</a></p>{SCRIPT}')
    return page(ctx, tt["new.title"], body)


# --------------------------------------------------------------------------- handlers


async def terminals_page(request: web.Request) -> web.Response:
    ctx, _ = page_user(request, *ROLES)
    return await _render_list(request, ctx, int(request.match_info["id"]))


async def add_terminal(request: web.Request) -> web.Response:
    ctx, user = page_user(request, *ROLES)
    building_id = int(request.match_info["id"])
    await read_form(request)  # the CSRF field only; the middleware checked it
    try:
        made = await asyncio.to_thread(enrol_routes.issue_code, request.app[SETTINGS], request.app[ENGINE],
                                       building_id, user.id)
    except Conflict:
        errors = FormErrors(general=[texts(ctx)["too_many"].format(n=enrol.MAX_LIVE_CODES)])
        return await _render_list(request, ctx, building_id, errors=errors, status=409)
    except NotFound:
        raise page_not_found(ctx) from None
    made["qr_svg"] = enrol_routes.qr_svg(made["qr_text"], texts(ctx)["new.qr"])
    log.info("building %s: enrolment code %s made by user %s", building_id, made["enrolment"], user.id)
    response = _new_code_page(ctx, request, building_id, made)
    return response


async def cancel_code(request: web.Request) -> web.Response:
    ctx, _ = page_user(request, *ROLES)
    enrolment_id = int(request.match_info["id"])

    def run() -> int | None:
        with request.app[ENGINE].connect() as conn:
            state = enrol.enrolment_state(conn, datetime.now(UTC), enrolment_id)
        if state is None:
            return None
        enrol_routes.cancel(request.app[ENGINE], enrolment_id)
        return int(state["building_id"])

    try:
        building_id = await asyncio.to_thread(run)
    except Conflict:
        found = await asyncio.to_thread(_enrolment_building, request, enrolment_id)
        if found is None:
            raise page_not_found(ctx) from None
        return await _render_list(request, ctx, found, errors=FormErrors(general=[texts(ctx)["used_already"]]),
                                  status=409)
    if building_id is None:
        raise page_not_found(ctx)
    raise web.HTTPSeeOther(f"/landlord/buildings/{building_id}/terminals?ok=cancelled_ok")


def _enrolment_building(request: web.Request, enrolment_id: int) -> int | None:
    with request.app[ENGINE].connect() as conn:
        state = enrol.enrolment_state(conn, datetime.now(UTC), enrolment_id)
    return None if state is None else int(state["building_id"])


async def stop_terminal(request: web.Request) -> web.Response:
    ctx, user = page_user(request, *ROLES)
    gateway_id = request.match_info["gw"]

    def building_of() -> int | None:
        with request.app[ENGINE].connect() as conn:
            found = conn.execute(sa.select(gateways.c.building_id).where(gateways.c.id == gateway_id)).scalar()
        return None if found is None else int(found)

    building_id = await asyncio.to_thread(building_of)
    if building_id is None:
        raise page_not_found(ctx)
    try:
        await revoke.revoke_gateway(request.app, gateway_id, user.id)
    except FleetError as exc:
        # Recorded (the server no longer listens to it, its door list
        # stops), but the broker has not dropped its login yet: say so and
        # offer the retry that finishes it. The broker's words stay in the log.
        log.error("gateway %s: revocation from the page did not reach the broker: %s", gateway_id, exc)
        errors = FormErrors(general=[texts(ctx)["stop_failed"]])
        return await _render_list(request, ctx, building_id, errors=errors, status=503, retry=gateway_id)
    log.info("gateway %s stopped from the page by user %s", gateway_id, user.id)
    raise web.HTTPSeeOther(f"/landlord/buildings/{building_id}/terminals?ok=stopped_ok")


async def code_page(request: web.Request) -> web.Response:
    """What anyone who scans a code's QR with a phone sees. The same page for
    every code, valid or not: it reads nothing."""
    ctx = context(request)
    tt = texts(ctx)
    code = wire.normalise_enrol_code(request.match_info["code"])
    shown = f'<div class="enrol-code">{esc(enrol.grouped(code))}</div>' if code else ""
    body = f'{CSS}<div class="card public-code">{shown}<p>{esc(tt["public.text"])}</p></div>'
    response = page(ctx, tt["public.title"], body)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def add_routes(r: web.UrlDispatcher) -> None:
    building = {"id": "building"}
    r.add_get(r"/landlord/buildings/{id:\d+}/terminals", allow(*ROLES, page=True, path=building)(terminals_page))
    r.add_post(r"/landlord/buildings/{id:\d+}/terminals", allow(
        *ROLES, page=True, path=building, rule="makes a one-time enrolment code for the building")(add_terminal))
    r.add_post(r"/landlord/enrolments/{id:\d+}/cancel", allow(*ROLES, page=True, path={"id": "enrolment"})(
        cancel_code))
    r.add_post("/landlord/gateways/{gw}/revoke", allow(
        *ROLES, page=True, path={"gw": "gateway"}, rule="cuts the gateway off the broker and its allowlist")(
        stop_terminal))
    r.add_get("/e/{code}", public("explains what an enrolment code is for; reads nothing, the same page for "
                                  "every code")(code_page))
