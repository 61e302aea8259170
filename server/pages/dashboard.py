"""``GET /``: gateways and the latest events, for a landlord or an operator on a phone.

Card numbers identify a tenant's card, so they are shown masked; the full value
is in the authenticated API (later work) only.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from html import escape
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from server.api.queries import list_gateways
from server.appkeys import ENGINE
from server.auth.policy import require_page_user
from server.db.models import events
from server.pages.i18n import TEXTS, pick_language

RECENT_LIMIT = 50


def mask_card(value: str | None) -> str:
    """Keep the first 4 and last 2 characters: enough to tell cards apart at a
    glance, not enough to clone one."""
    if not value:
        return ""
    if len(value) <= 3:
        return "*" * len(value)
    if len(value) <= 6:  # a Wiegand "facility:card" such as 90:324
        return "*" * (len(value) - 2) + value[-2:]
    return value[:4] + "*" * (len(value) - 6) + value[-2:]


def recent_events(engine: sa.Engine, limit: int = RECENT_LIMIT) -> list[dict[str, Any]]:
    c = events.c
    query = sa.select(c.gateway_id, c.seq, c.kind, c.door, c.device, c.occurred_at, c.credential_value,
                      c.data).order_by(c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def _time(value: datetime | str | None, fmt: str = "%m-%d %H:%M:%S") -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone().strftime(fmt)


def _detail(row: dict[str, Any], t: dict[str, str]) -> str:
    data = row.get("data") or {}
    if row["kind"] == "card_read":
        card = mask_card(row["credential_value"])
        decision = data.get("decision")
        if decision == "granted":
            return f"{card} · {t['granted']}"
        if decision == "denied":
            reason = data.get("reason")
            return f"{card} · {t['denied']}: {t.get(f'reason.{reason}', str(reason))}"
        return card
    if row["kind"] == "door_state":
        return t.get(f"door.{data.get('state')}", str(data.get("state")))
    return ", ".join(f"{k}={v}" for k, v in sorted(data.items()))


def _row_class(row: dict[str, Any]) -> str:
    data = row.get("data") or {}
    if data.get("decision") == "denied" or data.get("state") in ("forced", "held_open"):
        return "off"
    return ""


def render(lang: str, gws: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    t = TEXTS[lang]
    other = "en" if lang == "zh" else "zh"
    gw_rows = "".join(
        "<tr><td>{id}</td><td class='{cls}'>{state}</td><td>{seen}</td><td>{depth}</td><td>{age}</td><td>{gaps}</td></tr>".format(
            id=escape(g["id"]),
            cls="on" if g.get("online") else "off",
            state=t["online"] if g.get("online") else (t["offline"] if g.get("online") is False else t["unknown"]),
            seen=_time(g.get("last_seen")),
            depth=g.get("outbox_depth") if g.get("outbox_depth") is not None else "",
            age=f"{g['oldest_unsent_age_s']:.0f}" if g.get("oldest_unsent_age_s") is not None else "",
            gaps=g.get("open_gaps", 0),
        )
        for g in gws
    ) or f"<tr><td colspan='6'>{t['none']}</td></tr>"
    ev_rows = "".join(
        f"<tr><td title='{_time(r['occurred_at'], '%Y-%m-%d')}'>{_time(r['occurred_at'], '%H:%M:%S')}</td>"
        f"<td>{escape(r['door'] or r['device'])}</td>"
        f"<td class='what {_row_class(r)}'>{escape(t.get(r['kind'], r['kind']))} · {escape(_detail(r, t))}</td></tr>"
        for r in rows
    ) or f"<tr><td colspan='3'>{t['none']}</td></tr>"
    return f"""<!doctype html>
<html lang="{'zh-CN' if lang == 'zh' else 'en'}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>{t['title']}</title>
<style>
body{{font-family:system-ui,"PingFang SC","Noto Sans CJK SC",sans-serif;margin:0;padding:12px;background:#f5f6f8;color:#222}}
h1{{font-size:1.2rem;margin:0 0 8px}} h2{{font-size:1rem;margin:16px 0 6px}}
table{{width:100%;border-collapse:collapse;background:#fff;font-size:.9rem}}
th,td{{padding:6px 8px;border-bottom:1px solid #e3e5e8;text-align:left;white-space:nowrap}}
.wrap{{overflow-x:auto}} table.events{{table-layout:fixed}} table.events td{{overflow:hidden;text-overflow:ellipsis}} td.what{{white-space:normal}} .on{{color:#0a7d32;font-weight:600}} .off{{color:#b3261e;font-weight:600}}
header{{display:flex;justify-content:space-between;align-items:baseline}} small{{color:#666}}
</style></head><body>
<header><h1>{t['title']}</h1><a href="?lang={other}">{t['switch']}</a></header>
<small>{t['refresh']}</small>
<h2>{t['gateways']}</h2>
<div class="wrap"><table><tr><th>{t['gateway']}</th><th>{t['state']}</th><th>{t['last_seen']}</th><th>{t['outbox']}</th><th>{t['oldest']}</th><th>{t['gaps']}</th></tr>{gw_rows}</table></div>
<h2>{t['recent']}</h2>
<div class="wrap"><table class="events"><colgroup><col style="width:6.5em"><col style="width:22%"><col></colgroup>
<tr><th>{t['time']}</th><th>{t['door']}</th><th>{t['detail']}</th></tr>{ev_rows}</table></div>
</body></html>"""


async def dashboard_handler(request: web.Request) -> web.Response:
    require_page_user(request, "admin", "coordinator")
    lang = pick_language(request.query, request.headers.get("Accept-Language"))
    engine = request.app[ENGINE]
    gws = (await asyncio.to_thread(list_gateways, engine))["gateways"]
    rows = await asyncio.to_thread(recent_events, engine)
    return web.Response(text=render(lang, gws, rows), content_type="text/html", charset="utf-8")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", dashboard_handler)
