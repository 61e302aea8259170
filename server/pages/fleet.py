"""``GET /fleet``: every gateway's state for an administrator, a landlord's
own gateways for a landlord (those of their buildings; docs/fleet-health.md).

The alerts first (offline, backlog, a configuration that did not take), then
the gateways, sorted by trouble (``?sort=trouble``, the default), by when
they were last heard (``last_heard``) or by name (``name``), filtered by
state (``?state=``), 50 a page (``?page=``). A table on a wide screen, one
card per gateway on a phone. Everything in words: no database ids; a
device's own ``detail`` text is not shown (gateways put serial-port paths
there), nor a door terminal's ``last_error`` (addresses, URLs: the page says
what is wrong by category), the reason a configuration was rolled back or refused is, in the
gateway's words, because it is what the landlord needs to fix it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from server.appkeys import ENGINE, SETTINGS
from server.auth.policy import allow
from server.auth.scopes import scope_buildings
from server.fleet import health
from server.ingest import terminals
from server.pages.dashboard import age_words
from server.pages.guard import page_user
from server.pages.layout import PageContext, error_page, esc, page

ROLES = ("admin", "landlord")
REFRESH_S = 30
# Colour of each state's chip, with text that reads on it (WCAG AA).
STATE_COLOURS = {
    "online": ("#1e8e3e", "#000000"), "offline": ("#d93025", "#ffffff"), "backlog": ("#e8710a", "#000000"),
    "config_failed": ("#a142f4", "#ffffff"), "degraded": ("#f9ab00", "#000000"),
    "never_seen": ("#e8eaed", "#333333"), "revoked": ("#5f6368", "#ffffff"),
}
DEVICE_STATES = ("ok", "offline", "no_frames", "frozen", "dark", "moved", "starting")

# The door terminals' block (door_terminals), here and on a building's
# terminals page: marked in the colour of "degraded" when it needs attention.
DOOR_TERMINALS_CSS = """.door-terminals{margin-top:4px} .door-terminals ul{margin:2px 0;padding-left:18px}
.door-terminals.attention{border-left:3px solid #f9ab00;padding-left:8px}"""

CSS = """<style>
main{max-width:1280px} .fleet-wrap{overflow-x:auto}
.fleet-nav{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0}
.fleet-nav a{display:inline-block;padding:8px 10px;min-height:44px;border-radius:6px;background:#fff;
border:1px solid #c7ccd1;text-decoration:none;line-height:26px}
.fleet-nav a.on{background:#1a4d8f;color:#fff;border-color:#1a4d8f}
ul.alerts{list-style:none;margin:0;padding:0} ul.alerts li{padding:6px 0;border-bottom:1px solid #e3e5e8}
table.fleet td ul{margin:0;padding-left:18px} """ + DOOR_TERMINALS_CSS + """
table.fleet .links a{display:inline-block;min-height:44px;line-height:44px;margin-right:10px}
.pager{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:12px 0}
@media (max-width:720px){
table.fleet,table.fleet tbody,table.fleet tr,table.fleet td{display:block;width:100%}
table.fleet thead{display:none}
table.fleet tr{background:#fff;border-radius:8px;margin:0 0 10px;padding:8px 10px;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
table.fleet td{border:0;padding:3px 0;overflow-wrap:anywhere}
table.fleet td::before{content:attr(data-label) "：";color:#555;font-size:.9rem}
html[lang=en] table.fleet td::before{content:attr(data-label) ": "}
table.fleet td.name::before{content:none}
}
</style>"""

COLUMNS = ("name", "building", "state", "heard", "outbox", "skew", "devices", "disk", "memory", "config")


class BadQuery(ValueError):
    pass


def parse_query(query: Any) -> health.FleetQuery:
    state = query.get("state") or None
    if state is not None and state not in health.STATES:
        raise BadQuery("state")
    sort = query.get("sort") or "trouble"
    if sort not in health.SORTS:
        raise BadQuery("sort")
    raw_page = query.get("page") or "1"
    if not (raw_page.isascii() and raw_page.isdigit()) or not 1 <= int(raw_page) <= health.MAX_PAGE:
        raise BadQuery("page")
    return health.FleetQuery(state=state, sort=sort, page=int(raw_page))


# ---------------------------------------------------------------- values in words

def size_words(value: int | None) -> str:
    if value is None:
        return ""
    amount = float(max(0, value))
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" or amount >= 100 else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TB"


def gateway_name(row: dict[str, Any]) -> str:
    return str(row.get("hostname") or row["id"])


def state_chip(t: dict[str, str], state: str) -> str:
    background, colour = STATE_COLOURS.get(state, STATE_COLOURS["never_seen"])
    return (f'<span class="chip state-{esc(state)}" style="background:{background};color:{colour}">'
            f'{esc(t["fleet.state." + state])}</span>')


def heard_words(t: dict[str, str], row: dict[str, Any], now: datetime) -> str:
    seen = row.get("last_seen")
    # Enrolment writes the row before the gateway ever speaks: that is not hearing from it.
    if seen is None or row.get("state") == "never_seen":
        return t["fleet.never"]
    return t["fleet.ago"].format(age=age_words(t, (now - seen).total_seconds()))


def outbox_words(t: dict[str, str], row: dict[str, Any]) -> str:
    depth, age = row.get("outbox_depth"), row.get("oldest_unsent_age_s")
    if depth is None:
        return t["fleet.not_reported"]
    if depth == 0:
        return t["fleet.outbox.empty"]
    words = t["fleet.outbox.depth"].format(n=depth)
    if age is not None:
        words += t["sep"] + t["fleet.outbox.oldest"].format(age=age_words(t, float(age)))
    return words


def skew_words(t: dict[str, str], skew: float | None) -> str:
    if skew is None:
        return t["fleet.not_reported"]
    seconds = round(abs(skew))
    if seconds < 1:
        return t["fleet.skew.ok"]
    # skew is the server's time minus the gateway's: positive, the gateway is behind.
    return t["fleet.skew.behind" if skew > 0 else "fleet.skew.ahead"].format(n=seconds)


def counted(t: dict[str, str], key: str, n: int, **values: Any) -> str:
    """``key`` with ``n`` (and ``values``) filled in; its ``_one`` text when
    there is one and n is 1 (English says "1 write", not "1 writes")."""
    return t[key + "_one" if n == 1 and key + "_one" in t else key].format(n=n, **values)


def terminal_ids(row: dict[str, Any]) -> set[str]:
    """The devices the gateway also reports as door terminals it keeps lists for."""
    held = row.get("terminals_health")
    if not isinstance(held, list):
        return set()
    return {str(t["id"]) for t in held if isinstance(t, dict) and t.get("id") is not None}


def device_items(t: dict[str, str], devices: Any, terminals_too: set[str] | frozenset[str] = frozenset()
                 ) -> tuple[str, list[str]]:
    """A summary line, and the devices not ok, each named with its state.
    A door terminal the gateway keeps a list for is also one of its devices,
    "offline" whenever it does not hold the list even if it answers: its own
    line (terminal_lines) says what is wrong, so it is left out here."""
    if not isinstance(devices, list):
        return t["fleet.not_reported"], []
    others = [d for d in devices if not (isinstance(d, dict) and str(d.get("id")) in terminals_too)]
    if not others:
        return ("", []) if devices else (t["fleet.devices.none"], [])
    bad = health.devices_not_ok(others)
    if not bad:
        return t["fleet.devices.all_ok"].format(n=len(others)), []
    items = []
    for device in bad:
        state = device.get("state")
        words = t[f"fleet.device.{state}"] if state in DEVICE_STATES else t["fleet.not_reported"]
        items.append(t["fleet.device.item"].format(name=device.get("id", ""), state=words))
    return "", items


def disk_words(t: dict[str, str], row: dict[str, Any]) -> str:
    free, total = row.get("disk_free_bytes"), row.get("disk_total_bytes")
    if free is None:
        return t["fleet.not_reported"]
    if total:
        return t["fleet.disk.free"].format(free=size_words(free), total=size_words(total))
    return t["fleet.disk.free_only"].format(free=size_words(free))


def memory_words(t: dict[str, str], row: dict[str, Any]) -> str:
    rss, available = row.get("mem_rss_bytes"), row.get("mem_available_bytes")
    if rss is not None and available is not None:
        return t["fleet.memory.both"].format(rss=size_words(rss), available=size_words(available))
    if rss is not None:
        return t["fleet.memory.rss"].format(rss=size_words(rss))
    if available is not None:
        return t["fleet.memory.available"].format(available=size_words(available))
    return t["fleet.not_reported"]


def config_lines(t: dict[str, str], row: dict[str, Any]) -> list[str]:
    running, state, attempted = row.get("config_version"), row.get("config_state"), row.get("config_attempted")
    newest = row.get("newest_config")
    lines = []
    if running is not None:
        lines.append(t["fleet.config.running"].format(v=running))
    if state in ("applied", "applying", "rolled_back", "refused") and attempted is not None and \
            not (state == "applied" and attempted == running):
        lines.append(t[f"fleet.config.{state}"].format(v=attempted))
        if state in health.FAILED_CONFIG_STATES and row.get("config_error"):
            lines.append(t["fleet.config.reason"].format(reason=row["config_error"]))
    if newest is not None and (attempted is None or newest > attempted) and (running is None or newest > running):
        lines.append(t["fleet.config.pending"].format(v=newest))
    return lines or [t["fleet.config.none"]]


# ---------------------------------------------------------------- the page

def _href(ctx: PageContext, query: health.FleetQuery, **changes: Any) -> str:
    values = {"state": query.state, "sort": query.sort, "page": query.page, **changes}
    pairs = [(k, str(v)) for k, v in values.items() if v is not None and not (k == "sort" and v == "trouble")
             and not (k == "page" and v == 1)]
    return f"/fleet?{urlencode(pairs)}" if pairs else "/fleet"


def _nav(ctx: PageContext, query: health.FleetQuery, result: health.FleetPage) -> str:
    t = ctx.t
    total = sum(result.counts.values())
    chips = [f'<a class="{"on" if query.state is None else ""}" href="{esc(_href(ctx, query, state=None, page=1))}">'
             f'{esc(t["fleet.count"].format(label=t["fleet.all"], n=total))}</a>']
    for state in health.STATES:
        if result.counts.get(state) or query.state == state:
            label = t["fleet.count"].format(label=t["fleet.state." + state], n=result.counts.get(state, 0))
            chips.append(f'<a class="{"on" if query.state == state else ""}" data-state="{state}" '
                         f'href="{esc(_href(ctx, query, state=state, page=1))}">{esc(label)}</a>')
    sorts = [f'<a class="{"on" if query.sort == s else ""}" href="{esc(_href(ctx, query, sort=s, page=1))}">'
             f'{esc(t["fleet.sort." + s])}</a>' for s in health.SORTS]
    return (f'<nav class="fleet-nav" aria-label="{esc(t["fleet.filter"])}">{"".join(chips)}</nav>'
            f'<nav class="fleet-nav" aria-label="{esc(t["fleet.sort"])}">{"".join(sorts)}</nav>')


def _alert_words(t: dict[str, str], row: dict[str, Any], now: datetime) -> str:
    name = gateway_name(row)
    if row["state"] == "offline":
        return t["fleet.alert.offline"].format(name=name, ago=heard_words(t, row, now))
    if row["state"] == "backlog":
        depth = row.get("outbox_depth") or 0
        if depth > 0 and (row.get("oldest_unsent_age_s") or 0) <= health.BACKLOG_AGE_S:
            return t["fleet.alert.backlog"].format(name=name, n=depth)
        return t["fleet.alert.backlog_age"].format(name=name, age=age_words(t, float(row["oldest_unsent_age_s"])))
    if row["state"] == "config_failed":
        return t["fleet.alert.config_failed"].format(name=name)
    behind = int(row.get("terminals_behind") or 0)
    return t["fleet.alert.terminals_one" if behind == 1 else "fleet.alert.terminals"].format(name=name, n=behind)


def _alerts(ctx: PageContext, result: health.FleetPage, now: datetime) -> str:
    t = ctx.t
    if not result.alerts:
        return f'<h2>{esc(t["fleet.alerts"])}</h2><div class="card meta alerts-none">{esc(t["fleet.alerts.none"])}</div>'
    items = "".join(f'<li class="alert" data-state="{esc(r["state"])}">{state_chip(t, r["state"])} '
                    f'{esc(_alert_words(t, r, now))}</li>' for r in result.alerts)
    shown = len(result.alerts)
    total = result.alerts_total
    more = (f'<p class="meta">{esc(t["fleet.alerts.more"].format(n=total - shown))}</p>' if total > shown else "")
    return f'<h2>{esc(t["fleet.alerts"])}</h2><div class="card"><ul class="alerts">{items}</ul>{more}</div>'


def terminal_state(t: dict[str, str], terminal: dict[str, Any], want: Any) -> str:
    """What is wrong with a terminal that does not hold the gateway's list, in
    words: the first of unreachable, refusing writes, writes pending, no list,
    an older list. The gateway's own error text (addresses, URLs, the
    terminal's protocol codes) is for its log, not for this page."""
    version = terminal.get("version_held")
    if terminal.get("reachable") is False:
        return t["fleet.terminal.unreachable"]
    if (refused := terminal.get("writes_refused") or 0) > 0:
        return counted(t, "fleet.terminal.refused", refused)
    if (pending := terminal.get("pending") or 0) > 0:
        return counted(t, "fleet.terminal.pending", pending)
    if not isinstance(version, int):
        return t["fleet.terminal.never"]
    return t["fleet.terminal.old"].format(held=version, want=want)


def terminal_lines(t: dict[str, str], row: dict[str, Any]) -> tuple[str, list[str], str]:
    """The door terminals the gateway keeps lists for (server/ingest/terminals.py):
    a line before the list of those that do not hold the gateway's list (or
    the one line saying all do), each of those with why, and a line after for
    the others, which hold it. Nothing for a gateway without such terminals."""
    held = [terminal for terminal in row.get("terminals_health") or () if isinstance(terminal, dict)]
    if not held:
        return "", [], ""
    want = row.get("allowlist_version")
    behind = [terminal for terminal in held if terminals.is_behind(terminal, want)]
    up_to_date = len(held) - len(behind)
    version = t["fleet.terminals.version"].format(v=want) if isinstance(want, int) else ""
    if not behind:
        return counted(t, "fleet.terminals.all_ok", len(held)) + version, [], ""
    head = counted(t, "fleet.terminals.behind", len(behind), total=len(held)) if len(held) > 1 else ""
    items = [t["fleet.terminal.item"].format(name=terminal.get("id", ""), state=terminal_state(t, terminal, want))
             for terminal in behind]
    rest = counted(t, "fleet.terminals.rest", up_to_date) + version if up_to_date else ""
    return head, items, rest


def terminal_clocks(t: dict[str, str], row: dict[str, Any]) -> list[str]:
    """A line for each door terminal whose clock is off: it lets people in by
    validity times read against that clock."""
    lines = []
    for terminal in row.get("terminals_health") or ():
        if isinstance(terminal, dict) and (offset := terminals.clock_off(terminal)) is not None:
            key = "fleet.terminal.clock_ahead" if offset > 0 else "fleet.terminal.clock_behind"
            state = t[key].format(age=age_words(t, abs(offset)))
            lines.append(t["fleet.terminal.item"].format(name=terminal.get("id", ""), state=state))
    return lines


def door_terminals(t: dict[str, str], row: dict[str, Any]) -> str:
    """The block about the gateway's door terminals (terminal_lines, then
    terminal_clocks), on this page and on a building's terminals page;
    nothing for a gateway without any."""
    head, behind, rest = terminal_lines(t, row)
    if not (head or behind or rest):
        return ""
    clocks = terminal_clocks(t, row)
    # Marked in the colour of "degraded" when some terminal is behind or its clock is off.
    marked = " attention" if behind or clocks else ""
    return (f'<div class="door-terminals{marked}">{_line(head)}{_list(behind, "behind")}{_line(rest)}'
            f'{_list(clocks, "clock")}</div>')


def _line(text: str) -> str:
    return f'<div class="line">{esc(text)}</div>' if text else ""


def _list(items: list[str], extra: str = "") -> str:
    if not items:
        return ""
    attributes = f' class="{extra}"' if extra else ""
    return f"<ul{attributes}>" + "".join(f"<li>{esc(item)}</li>" for item in items) + "</ul>"


def _cell(t: dict[str, str], column: str, content: str, extra: str = "") -> str:
    return f'<td class="{column}{extra}" data-label="{esc(t["fleet.col." + column])}">{content}</td>'


def _row(ctx: PageContext, row: dict[str, Any], now: datetime) -> str:
    t = ctx.t
    links = []
    if row.get("revoked_at") is None:
        links.append(f'<a href="/landlord/gateways/{quote(str(row["id"]), safe="")}/config">'
                     f'{esc(t["fleet.link.config"])}</a>')
    if ctx.user is not None and ctx.user.role == "landlord" and row.get("building_id") is not None:
        links.append(f'<a href="/landlord/buildings/{int(row["building_id"])}/terminals">'
                     f'{esc(t["fleet.link.terminals"])}</a>')
    summary, bad = device_items(t, row.get("devices_health"), terminal_ids(row))
    devices = esc(summary) + _list(bad)
    devices += door_terminals(t, row)
    config = "<br>".join(esc(line) for line in config_lines(t, row))
    name = f'<strong>{esc(gateway_name(row))}</strong>'
    if links:
        name += f'<div class="links">{"".join(links)}</div>'
    cells = [
        _cell(t, "name", name),
        _cell(t, "building", esc(row.get("building_name") or t["fleet.no_building"])),
        _cell(t, "state", state_chip(t, row["state"])),
        _cell(t, "heard", esc(heard_words(t, row, now))),
        _cell(t, "outbox", esc(outbox_words(t, row))),
        _cell(t, "skew", esc(skew_words(t, row.get("clock_skew_s")))),
        _cell(t, "devices", devices),
        _cell(t, "disk", esc(disk_words(t, row))),
        _cell(t, "memory", esc(memory_words(t, row))),
        _cell(t, "config", config),
    ]
    return f'<tr class="gateway" data-gateway="{esc(row["id"])}" data-state="{esc(row["state"])}">{"".join(cells)}</tr>'


def _pager(ctx: PageContext, query: health.FleetQuery, result: health.FleetPage) -> str:
    t = ctx.t
    parts = [f'<span class="meta">{esc(t["fleet.page"].format(page=query.page, pages=result.pages, total=result.total))}'
             "</span>"]
    if query.page > 1:
        parts.append(f'<a class="button secondary prev" href="{esc(_href(ctx, query, page=query.page - 1))}">'
                     f'{esc(t["fleet.prev"])}</a>')
    if query.page < result.pages:
        parts.append(f'<a class="button next" href="{esc(_href(ctx, query, page=query.page + 1))}">'
                     f'{esc(t["fleet.next"])}</a>')
    return f'<div class="pager">{"".join(parts)}</div>'


def render(ctx: PageContext, query: health.FleetQuery, result: health.FleetPage, now: datetime) -> str:
    t = ctx.t
    if result.rows:
        head = "".join(f"<th>{esc(t['fleet.col.' + c])}</th>" for c in COLUMNS)
        body = "".join(_row(ctx, r, now) for r in result.rows)
        table = (f'<div class="fleet-wrap"><table class="fleet"><thead><tr>{head}</tr></thead>'
                 f'<tbody>{body}</tbody></table></div>')
    else:
        key = "fleet.none_state" if query.state is not None else "fleet.none"
        table = f'<div class="card meta fleet-empty">{esc(t[key])}</div>'
    return (f'{CSS}<p class="meta">{esc(t["fleet.intro"])}</p>{_alerts(ctx, result, now)}'
            f'<h2>{esc(t["fleet.list"])}</h2>{_nav(ctx, query, result)}{table}{_pager(ctx, query, result)}')


async def fleet_page(request: web.Request) -> web.Response:
    ctx, user = page_user(request, *ROLES)
    try:
        query = parse_query(request.query)
    except BadQuery:
        return error_page(ctx, 400)
    scope = scope_buildings(user.role, user.id)
    now = datetime.now(UTC)
    settings = request.app[SETTINGS]

    def load() -> health.FleetPage:
        with request.app[ENGINE].connect() as conn:
            return health.list_fleet(conn, scope, now, settings, query)

    result = await asyncio.to_thread(load)
    return page(ctx, ctx.t["fleet.title"], render(ctx, query, result, now),
                head=f'<meta http-equiv="refresh" content="{REFRESH_S}">')


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/fleet", allow(*ROLES, page=True, rule="a landlord sees the gateways of their own buildings")(
        fleet_page))
