"""The coordinator's home (/c), the overdue patrol list (/c/overdue) and the
workload against the staffing ratio (/c/workload). Administrators see the
whole city and, on /c, the dispatch view: reported tasks (escalated ones
first) with a form to send each to a coordinator of its grid."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from aiohttp import web

from server.auth.policy import AuthUser
from server.grid import schedule, service
from server.grid.scope import grid_ids_of
from server.grid.workflow import Actor
from server.grid.workload import workload
from server.pages.grid_common import CSS, grid_user, local, now, rules_of, run_read, task_card
from server.pages.layout import PageContext, esc, flash, grade_chip, page, text_on
from server.rules import CityRules

LIST_LIMIT = 50
OVERDUE_PAGE = 50
JsonObj = dict[str, Any]


def _tasks(conn: sa.Connection, actor: Actor, **query: Any) -> list[JsonObj]:
    items, _ = service.list_tasks(conn, now(), actor, service.TaskQuery(limit=LIST_LIMIT, **query))
    return items


def _home_data(conn: sa.Connection, user: AuthUser, rules: CityRules) -> JsonObj:
    actor = service.actor_facts(conn, user)
    admin = user.role == "admin"
    data: JsonObj = {
        "mine": _tasks(conn, actor, assignee_user_id=user.id, state="open", sort="due"),
        "counts": service.counts_by_state(conn, now(), user.id),
        "grids": None if admin else sorted(actor.grid_ids),
    }
    scope = None if admin else actor.grid_ids
    data["overdue_patrols"] = 0 if scope is not None and not scope else \
        schedule.overdue_units(conn, now(), rules, grid_ids=scope, limit=1)[1]
    if admin:
        # Escalated first, then by deadline; each page holds LIST_LIMIT.
        escalated = _tasks(conn, actor, state="reported", escalated=True, sort="due")
        seen = {t["id"] for t in escalated}
        reported = (escalated + [t for t in _tasks(conn, actor, state="reported", sort="due")
                                 if t["id"] not in seen])[:LIST_LIMIT]
        data["dispatch"] = [(t, service.assignable(conn, t["grid_id"])) for t in reported]
        for state in ("handled", "verified", "evaluated"):
            data[state] = _tasks(conn, actor, state=state, sort="due")
        # The lists show LIST_LIMIT each; the headings say how many there are.
        data["totals"] = {state: service.count_tasks(conn, now(), actor, service.TaskQuery(state=state))
                          for state in ("reported", "handled", "verified", "evaluated")}
        data["overdue_tasks"] = service.count_tasks(conn, now(), actor, service.TaskQuery(overdue=True))
    else:
        data["to_claim"] = [t for t in _tasks(conn, actor, state="reported", sort="due")
                            if t["grid_id"] in actor.grid_ids]
        data["handled"] = [t for t in _tasks(conn, actor, state="handled", sort="due")
                           if t["grid_id"] in actor.grid_ids]
        data["overdue_tasks"] = data["counts"]["overdue"]
    return data


def _section(ctx: PageContext, rules: CityRules, title_key: str, items: list[JsonObj], css: str,
             extra: Any = None, total: int | None = None) -> str:
    cards = "".join(task_card(ctx, rules, t, extra(t) if extra else "") for t in items) or \
        f'<p class="meta">{esc(ctx.t["grid.no_tasks"])}</p>'
    count = len(items) if total is None else total
    return f'<section class="{css}"><h2>{esc(ctx.t[title_key])} ({count})</h2>{cards}</section>'


def _dispatch_form(ctx: PageContext, task: JsonObj, people: list[JsonObj]) -> str:
    if not people:
        return ""
    options = "".join(f'<option value="{p["id"]}">{esc(p["display_name"])}</option>' for p in people)
    return (f'<form class="dispatch" method="post" action="/c/tasks/{task["id"]}/dispatch">{ctx.csrf_field()}'
            f'<input type="hidden" name="back" value="/c">'
            f'<label for="a-{task["id"]}">{esc(ctx.t["task.assign_to"])}</label>'
            f'<select id="a-{task["id"]}" name="assignee_user_id">{options}</select>'
            f'<p><button type="submit">{esc(ctx.t["task.action.dispatch"])}</button></p></form>')


async def home_handler(request: web.Request) -> web.Response:
    ctx, user = grid_user(request)
    rules = rules_of(request)
    data = await run_read(request, lambda conn: _home_data(conn, user, rules))
    t = ctx.t
    stats = (f'<div class="stats"><span id="overdue-tasks"><strong>{data["overdue_tasks"]}</strong>'
             f'{esc(t["grid.overdue_tasks"])}</span>'
             f'<a id="overdue-patrols" href="/c/overdue"><strong>{data["overdue_patrols"]}</strong>'
             f'{esc(t["grid.overdue_patrols"])}</a>'
             f'<a href="/c/workload"><strong>&#9878;</strong>{esc(t["grid.workload.title"])}</a>'
             f'<a id="print-plates" href="/c/plates"><strong>&#9641;</strong>{esc(t["plates.title"])}</a></div>')
    body = [f"<style>{CSS}</style>", flash(ctx, request), stats]
    if data["grids"] is not None and not data["grids"]:
        body.append(f'<div class="waiting">{esc(t["grid.no_grid"])}</div>')
    body.append(_section(ctx, rules, "grid.my_tasks", data["mine"], "mine"))
    if user.role == "admin":
        dispatch = [task for task, _ in data["dispatch"]]
        people = {task["id"]: p for task, p in data["dispatch"]}
        totals = data["totals"]
        body.append(_section(ctx, rules, "grid.dispatch", dispatch, "dispatch",
                             lambda task: _dispatch_form(ctx, task, people[task["id"]]), totals["reported"]))
        body.append(_section(ctx, rules, "grid.to_check", data["handled"], "to-check", None, totals["handled"]))
        body.append(_section(ctx, rules, "grid.to_evaluate", data["verified"], "to-evaluate", None,
                             totals["verified"]))
        body.append(_section(ctx, rules, "grid.to_archive", data["evaluated"], "to-archive", None,
                             totals["evaluated"]))
    else:
        body.append(_section(ctx, rules, "grid.to_claim", data["to_claim"], "to-claim"))
        body.append(_section(ctx, rules, "grid.to_check", data["handled"], "to-check"))
    return page(ctx, t["grid.home.title"], "".join(body))


# --------------------------------------------------------------------------- overdue patrols


def _scope(conn: sa.Connection, user: AuthUser) -> frozenset[int] | None:
    return None if user.role == "admin" else grid_ids_of(conn, user.id)


async def overdue_handler(request: web.Request) -> web.Response:
    ctx, user = grid_user(request)
    rules = rules_of(request)
    try:
        offset = max(0, int(request.query.get("offset", "0")))
    except ValueError:
        offset = 0

    def load(conn: sa.Connection) -> tuple[list[JsonObj], int]:
        return schedule.overdue_units(conn, now(), rules, grid_ids=_scope(conn, user), limit=OVERDUE_PAGE,
                                      offset=offset)

    units, total = await run_read(request, load)
    t = ctx.t
    cards = []
    for u in units:
        last = local(rules, u["last_patrol_at"]) if u["last_patrol_at"] else t["grid.never"]
        cards.append(
            f'<div class="card overdue-unit" data-unit="{u["unit_id"]}"><h3><a href="/c/units/{u["unit_id"]}">'
            f'{esc(u["building_name"])} {esc(u["number"])}</a></h3>'
            f'<div class="row">{grade_chip(t, u["grade"])}'
            f'<span class="late">{esc(t["grid.overdue.days"].format(days=whole(u["days_overdue"])))}</span></div>'
            f'<div class="meta">{esc(u["building_address"] or "")} · {esc(u["grid_code"] or "")}</div>'
            f'<div class="meta">{esc(t["grid.last_patrol"])}{esc(t["sep"])}{esc(last)} · '
            f'{esc(t["grid.every_days"].format(days=u["interval_days"]))}</div></div>')
    body = [f"<style>{CSS}</style>", f'<p class="meta" id="overdue-total">'
            f'{esc(t["grid.overdue.count"].format(n=total))}</p>']
    body.append("".join(cards) or f'<p class="meta">{esc(t["grid.overdue.none"])}</p>')
    if offset + len(units) < total:
        href = "/c/overdue?" + urlencode({"offset": offset + len(units)})
        body.append(f'<p><a class="button" href="{esc(href)}">{esc(t["grid.more"])}</a></p>')
    return page(ctx, t["grid.overdue.title"], "".join(body))


# --------------------------------------------------------------------------- workload


def whole(value: float | int) -> int:
    """Days and people are counted whole on a page: the schedule's 327.7
    days overdue read "328", a coordinator's 33.3 residents "33"."""
    return round(value)


def _figure(ctx: PageContext, key: str, value: object, ident: str = "") -> str:
    data = f' data-figure="{esc(ident)}"' if ident else ""
    shown = "–" if value is None else whole(value) if isinstance(value, float) else value
    return f'<span class="stat"{data}>{esc(ctx.t[key])}{esc(ctx.t["sep"])}<b>{esc(shown)}</b></span>'


def _status(ctx: PageContext, status: str) -> str:
    colour = {"ok": "#1e8e3e", "over": "#e8710a", "unstaffed": "#d93025"}.get(status, "#9aa0a6")
    return f'<span class="chip" data-status="{esc(status)}" style="background:{colour};color:{text_on(colour)}">' \
           f'{esc(ctx.t["grid.status." + status])}</span>'


async def workload_handler(request: web.Request) -> web.Response:
    ctx, user = grid_user(request)
    rules = rules_of(request)
    data = await run_read(request, lambda conn: workload(conn, now(), rules, grid_ids=_scope(conn, user)))
    t = ctx.t
    grids = "".join(
        f'<div class="card grid-load" data-grid="{esc(g["code"])}"><h3>{esc(g["name"])} ({esc(g["code"])})</h3>'
        f'<div class="row">{_status(ctx, g["status"])}</div><div>'
        f'{_figure(ctx, "grid.residents", g["residents"], "residents")}'
        f'{_figure(ctx, "grid.coordinators", g["coordinators"], "coordinators")}'
        f'{_figure(ctx, "grid.needed", g["needed"], "needed")}'
        f'{_figure(ctx, "grid.per_coordinator", g["residents_per_coordinator"], "per")}'
        f'{_figure(ctx, "grid.open_tasks", g["open_tasks"], "open")}'
        f'{_figure(ctx, "grid.unassigned", g["unassigned_tasks"], "unassigned")}'
        f'{_figure(ctx, "grid.overdue_tasks", g["overdue_tasks"], "overdue-tasks")}'
        f'{_figure(ctx, "grid.overdue_patrols", g["overdue_patrols"], "overdue-patrols")}</div></div>'
        for g in data["grids"])
    people = "".join(
        f'<div class="card person-load" data-user="{p["user_id"]}"><h3>{esc(p["display_name"])}</h3>'
        f'<div class="row">{_status(ctx, p["status"])}<span class="meta">{esc(", ".join(p["grids"]))}</span></div>'
        f'<div>{_figure(ctx, "grid.residents", p["residents"], "residents")}'
        f'{_figure(ctx, "grid.open_tasks", p["open_tasks"], "open")}'
        f'{_figure(ctx, "grid.overdue_tasks", p["overdue_tasks"], "overdue-tasks")}'
        f'{_figure(ctx, "grid.overdue_patrols", p["overdue_patrols"], "overdue-patrols")}</div></div>'
        for p in data["coordinators"])
    body = (f'<p class="meta">{esc(t["grid.workload.ratio"].format(ratio=data["ratio"]))}</p>'
            f'<h2>{esc(t["grid.workload.grids"])}</h2>{grids}'
            f'<h2>{esc(t["grid.workload.people"])}</h2>{people}')
    return page(ctx, t["grid.workload.title"], body)
