"""``GET /``: gateways and the latest events, for an administrator or a
coordinator on a phone.

Everything is written for a person: each event in words ("设备 1号线 离线",
"网关已启动（软件版本 0.1.0）"), never the event's raw fields. A device's own
``detail`` text is not shown: gateways put serial-port paths and driver
messages there. Card numbers are masked (server/pages/masks.py); the full
value is in the authenticated API only. Times are in the city's time zone
with the date, and the year when it is not this year.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from aiohttp import web

from rentgate import wire
from server.api.queries import list_gateways
from server.appkeys import ENGINE
from server.auth.policy import allow, require_page_user
from server.db.models import events
from server.pages.camera_alerts import camera_words
from server.pages.layout import PageContext, context, esc, page, when
from server.pages.masks import mask_card
from server.pages.state import PAGES

RECENT_LIMIT = 50
REFRESH_S = 5
# What the OSDP adapter says when a reader's casing is opened or closed
# (gateway/devices/osdp.py); any other detail is a driver's own words.
TAMPER_ON = "tamper alarm: casing opened"
TAMPER_OFF = "tamper alarm cleared"
GATEWAY_KINDS = ("gateway_started", "events_dropped")

CSS = """<style>
.gw h3{display:flex;flex-wrap:wrap;gap:6px;align-items:center}
.gw .chip.online{background:#1e8e3e;color:#000} .gw .chip.offline{background:#d93025;color:#fff}
.gw .chip.never,.gw .chip.silent{background:#e8eaed;color:#333}
ul.events{list-style:none;padding:0;margin:0} ul.events li{padding:8px 0;border-bottom:1px solid #e3e5e8}
ul.events .at{color:#555;font-size:.9rem;white-space:nowrap} ul.events .where{font-weight:600}
ul.events li.alarm .what{color:#b3261e;font-weight:600}
</style>"""


def recent_events(engine: sa.Engine, limit: int = RECENT_LIMIT) -> list[dict[str, Any]]:
    """The latest by when they happened (indexed), not by arrival: a gateway
    that delivers months-old reads late must not push today's off the page."""
    c = events.c
    query = sa.select(c.gateway_id, c.kind, c.door, c.device, c.occurred_at, c.credential_value,
                      c.data).order_by(c.occurred_at.desc(), c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def age_words(t: dict[str, str], seconds: float) -> str:
    """How long, rounded to the unit a person would use."""
    s = max(0, round(seconds))
    if s < 60:
        return t["age.s"].format(n=s)
    if s < 3600:
        return t["age.m"].format(n=s // 60)
    if s < 86400:
        return t["age.h"].format(n=s // 3600)
    return t["age.d"].format(n=s // 86400)


def gateway_state(gw: dict[str, Any]) -> str:
    """online / offline from the gateway's own status messages; "silent" when
    it has sent data but never a status (the district simulation's gateways,
    or events imported from elsewhere); "never" when nothing at all has come
    from it (a gateway not set up yet)."""
    if gw.get("online") is True:
        return "online"
    if gw.get("online") is False:
        return "offline"
    return "silent" if gw.get("last_seen") else "never"


def _device_words(t: dict[str, str], row: dict[str, Any], data: dict[str, Any]) -> str:
    device = row["device"] or row["door"] or ""
    detail = data.get("detail")
    if detail == TAMPER_ON:
        text = t["ev.device.tamper"].format(device=device)
    elif detail == TAMPER_OFF:
        text = t["ev.device.tamper_cleared"].format(device=device)
    else:
        text = t["ev.device.online" if data.get("online") else "ev.device.offline"].format(device=device)
    bad = data.get("bad_frames")
    if isinstance(bad, int) and bad > 0:
        text += t["sep"] + t["ev.device.bad_frames"].format(n=bad)
    return text


def event_words(t: dict[str, str], row: dict[str, Any]) -> tuple[str, bool]:
    """The event as a sentence, and whether it is an alarm."""
    data = row.get("data") or {}
    kind = row["kind"]
    if kind == "card_read":
        card = mask_card(row["credential_value"])
        text = t["ev.what.card"].format(card=card) if card else t["ev.what.card_nocard"]
        decision = data.get("decision")
        if decision == "granted":
            return f"{text} · {t['granted']}", False
        if decision == "denied":
            reason = data.get("reason")
            return f"{text} · {t['denied']}{t['sep']}{t.get(f'reason.{reason}', t['reason.unknown'])}", True
        return text, False
    if kind == "door_state":
        state = data.get("state")
        return f"{t['door_state']} · {t.get(f'door.{state}', t['ev.other'])}", state in ("forced", "held_open")
    if kind == "device_status":
        return _device_words(t, row, data), data.get("detail") == TAMPER_ON or not data.get("online")
    if kind == "gateway_started":
        version = data.get("version") or "?"
        pending = data.get("pending")
        if isinstance(pending, int) and pending > 0:
            return t["ev.started_pending"].format(version=version, n=pending), False
        return t["ev.started"].format(version=version), False
    if kind == "events_dropped":
        key = f"ev.dropped.{data.get('reason')}"
        return t.get(key, t["ev.dropped.other"]).format(n=data.get("count", "?")), True
    if kind in wire.CAMERA_KINDS:
        # No picture here: the page refreshes every few seconds, and each
        # view of a snapshot is audited; the unit page shows them on request.
        return camera_words(t, kind, data), kind in wire.INWARD_ALERT_KINDS
    return t["ev.other"], False


def _gateway_card(ctx: PageContext, gw: dict[str, Any], zone: ZoneInfo, now: datetime) -> str:
    t = ctx.t
    state = gateway_state(gw)
    lines = []
    seen = when(t, gw.get("last_seen"), zone, now)
    lines.append(f'{esc(t["gw.last_seen"])}{esc(t["sep"])}{esc(seen)}' if seen else esc(t["gw.never_seen"]))
    if gw.get("version"):
        lines.append(f'{esc(t["gw.version"])} {esc(gw["version"])}')
    if gw.get("devices_total"):
        lines.append(esc(t["gw.devices"].format(online=gw.get("devices_online") or 0, total=gw["devices_total"])))
    depth = gw.get("outbox_depth")
    if depth:
        unsent = t["gw.unsent"].format(n=depth)
        if gw.get("oldest_unsent_age_s") is not None:
            unsent += t["sep"] + t["gw.waiting"].format(age=age_words(t, float(gw["oldest_unsent_age_s"])))
        lines.append(esc(unsent))
    elif depth == 0:
        lines.append(esc(t["gw.all_sent"]))
    if gw.get("open_gaps"):
        lines.append(esc(t["gw.gaps"].format(n=gw["open_gaps"])))
    hint = f'<p class="hint">{esc(t[f"gw.{state}_hint"])}</p>' if state in ("never", "silent") else ""
    meta = "".join(f'<div class="meta">{line}</div>' for line in lines)
    return (f'<div class="card gw" data-gateway="{esc(gw["id"])}" data-state="{state}">'
            f'<h3>{esc(t["gw.named"].format(id=gw["id"]))} <span class="chip {state}">{esc(t["gw." + state])}'
            f'</span></h3>{meta}{hint}</div>')


def _event_item(t: dict[str, str], row: dict[str, Any], zone: ZoneInfo, now: datetime) -> str:
    what, alarm = event_words(t, row)
    # Doors as the gateway's configuration names them. A device's own event
    # names the device in its words, and the gateway's own events (whose
    # device is the placeholder "gateway") belong to the gateway.
    gateway = t["gw.named"].format(id=row["gateway_id"])
    if row["kind"] in GATEWAY_KINDS:
        where = gateway
    elif row["kind"] == "device_status":
        where = row["door"] or gateway
    else:
        where = row["door"] or row["device"] or gateway
    return (f'<li class="event{" alarm" if alarm else ""}" data-kind="{esc(row["kind"])}">'
            f'<span class="at">{esc(when(t, row["occurred_at"], zone, now))}</span> '
            f'<span class="where">{esc(where)}</span> · <span class="what">{esc(what)}</span></li>')


def render(ctx: PageContext, gws: list[dict[str, Any]], rows: list[dict[str, Any]], zone: ZoneInfo,
           now: datetime) -> str:
    t = ctx.t
    cards = "".join(_gateway_card(ctx, g, zone, now) for g in gws) or f'<div class="card meta">{esc(t["none"])}</div>'
    items = "".join(_event_item(t, r, zone, now) for r in rows)
    recent = f'<ul class="events">{items}</ul>' if items else f'<p class="meta">{esc(t["none"])}</p>'
    return (f'{CSS}<p class="meta">{esc(t["refresh"])}</p><h2>{esc(t["gateways"])}</h2>{cards}'
            f'<h2>{esc(t["recent"])}</h2><div class="card">{recent}</div>')


async def dashboard_handler(request: web.Request) -> web.Response:
    # A browser without a login goes to /login; an API client gets 401 (the
    # error pages turn it into a page, status kept).
    require_page_user(request, "admin", "coordinator")
    ctx = context(request)
    engine = request.app[ENGINE]
    gws = (await asyncio.to_thread(list_gateways, engine))["gateways"]
    rows = await asyncio.to_thread(recent_events, engine)
    body = render(ctx, gws, rows, request.app[PAGES].rules.zone, datetime.now(UTC))
    return page(ctx, ctx.t["title"], body, head=f'<meta http-equiv="refresh" content="{REFRESH_S}">')


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", allow("admin", "coordinator", page=True, rule="a coordinator sees their own grids")(dashboard_handler))
