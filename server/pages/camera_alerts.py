"""Door camera events on the pages of those entitled to them (docs/cameras-privacy.md):
a localized label for each camera event kind, the "门口摄像头" section of the
coordinator's unit page (the building's last camera alerts), and
``GET /c/events/{id}/snapshot``, the picture behind a thumbnail, under the
same policy as the page (administrators, coordinators of the building's
grid: the route policy checks the event's building) and audited on every
view like the API's (server/snapshots/audit.py).

A thumbnail sits in a closed ``<details>`` with ``loading="lazy"``, so the
picture is fetched (and its view audited) when the coordinator opens it,
not each time the page is shown. Landlords' and tenants' pages never show
a snapshot nor link to one."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from aiohttp import web

from rentgate import wire
from server.auth.policy import actor_of, allow
from server.db.models import event_snapshots, events, gateways
from server.pages.guard import page_user
from server.pages.layout import PageContext, esc, not_found
from server.snapshots.audit import audited, view_entry
from server.snapshots.serve import jpeg_response, snapshot_bytes

ROLES = ("admin", "coordinator")
RECENT_ALERTS = 10
CSS = """<style>
ul.camera li{display:flex;flex-wrap:wrap;gap:4px 8px;align-items:baseline}
ul.camera details{flex-basis:100%} ul.camera summary{min-height:44px;line-height:44px;cursor:pointer}
ul.camera img{display:block;max-width:100%;height:auto;border-radius:4px}
</style>"""

Row = dict[str, Any]


def camera_words(t: dict[str, str], kind: str, data: dict[str, Any]) -> str:
    """What a camera event was, in the page's language."""
    if kind == "people_crossing":
        return t["camera.out" if data.get("direction") == "out" else "camera.in"]
    if kind == "tailgating":
        entered, granted = data.get("entered"), data.get("granted")
        label = t["camera.tailgating"]
        if isinstance(entered, int) and isinstance(granted, int):
            label += t["sep"] + t["camera.tailgating_detail"].format(entered=entered, granted=granted)
        return label
    return t["camera.unidentified_entry"]


def load_camera_alerts(conn: sa.Connection, building_id: int, limit: int = RECENT_ALERTS) -> list[Row]:
    """The building's last tailgating and unidentified entries, newest first,
    each with whether its snapshot is stored."""
    e, s = events.c, event_snapshots.c
    query = (sa.select(e.id, e.kind, e.door, e.device, e.occurred_at, e.data, s.event_id.label("stored"))
             .select_from(events.join(gateways, gateways.c.id == e.gateway_id)
                          .outerjoin(event_snapshots, s.event_id == e.id))
             .where(gateways.c.building_id == building_id, e.kind.in_(wire.INWARD_ALERT_KINDS))
             .order_by(e.occurred_at.desc(), e.id.desc()).limit(limit))
    return [dict(r) for r in conn.execute(query).mappings()]


def _when(value: datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%m-%d %H:%M")


def render_camera_section(ctx: PageContext, rows: list[Row], zone: ZoneInfo) -> str:
    t = ctx.t
    if not rows:
        return f'<h2>{esc(t["camera.title"])}</h2><div class="card meta">{esc(t["camera.none"])}</div>'
    items = []
    for r in rows:
        if r["stored"] is not None:
            src = f'/c/events/{int(r["id"])}/snapshot'
            picture = (f'<details><summary>{esc(t["camera.show"])}</summary><a href="{src}">'
                       f'<img src="{src}" alt="{esc(t["camera.photo"])}" loading="lazy" width="320"></a></details>')
        else:
            picture = f'<span class="meta">{esc(t["camera.no_photo"])}</span>'
        items.append(f'<li class="camera-alert" data-kind="{esc(r["kind"])}"><b>{_when(r["occurred_at"], zone)}</b> '
                     f'{esc(r["door"] or r["device"])} · <span class="badge warn">'
                     f'{esc(camera_words(t, r["kind"], r["data"] or {}))}</span>{picture}</li>')
    return (f'{CSS}<h2>{esc(t["camera.title"])}</h2><div class="card"><p class="meta">{esc(t["camera.audited"])}</p>'
            f'<ul class="plain camera">{"".join(items)}</ul></div>')


async def snapshot_page(request: web.Request) -> web.StreamResponse:
    ctx, user = page_user(request, *ROLES)
    event_id = int(request.match_info["id"])
    data = await snapshot_bytes(request, event_id)
    if data is None:
        return not_found(ctx)
    await audited(request, view_entry(actor_of(user), event_id, via="page"))
    return jpeg_response(data)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get(r"/c/events/{id:\d+}/snapshot", allow(
        *ROLES, page=True, path={"id": "event"},
        rule="the event's building in the caller's grids; every view audited as pii.view")(snapshot_page))
