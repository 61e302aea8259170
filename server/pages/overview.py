"""GET /overview[?area=<code>]: the four rates of an area's children as bar
charts (tap a name to go one level down), each rate's trend, and the area's
units by grade. For administrators and coordinators."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from urllib.parse import urlencode

from aiohttp import web

from server.db.models import GRADES
from server.pages.charts import Bar, bar_chart, grade_chart, line_chart, ratio_text
from server.pages.guard import OVERVIEW_ROLES, page_not_found, page_user, read
from server.pages.layout import GRADE_COLOURS, NO_GRADE_COLOUR, PageContext, day_label, esc
from server.pages.layout import page as render_page
from server.pages.queries_overview import TREND_DAYS, Overview, overview
from server.pages.state import PAGES
from server.reconcile.rates import RATES


def _href(code: str) -> str:
    return "/overview?" + urlencode({"area": code})


def _breadcrumb(ctx: PageContext, data: Overview) -> str:
    links = [f'<a href="/overview">{esc(ctx.t["overview.all"])}</a>']
    links += [f'<a href="{esc(_href(a.code))}">{esc(a.name)}</a>' for a in data.path]
    return f'<nav class="crumbs meta">{" › ".join(links)}</nav>'


def _rates_section(ctx: PageContext, data: Overview) -> str:
    t = ctx.t
    if not data.children and data.area is None:
        return f'<div class="card">{esc(t["no_areas"])}</div>'
    out = []
    if data.area is not None:
        totals = [(r, getattr(data.area, r)) for r in RATES]
        own = " · ".join(f'{esc(t["rate." + r])} {esc(ratio_text(x.numerator, x.denominator))}' for r, x in totals)
        out.append(f'<div class="card area-total">{own}</div>')
    if data.children:
        level = t["level." + data.children[0].level]
        out.append(f'<p class="meta">{esc(level)} · {esc(t["drill"])}</p>')
        links = "".join(f'<a class="button area" href="{esc(_href(c.code))}">{esc(c.name)}</a>'
                        for c in data.children if c.level != "grid")
        if links:
            out.append(f'<nav class="row drill">{links}</nav>')
        for rate in RATES:
            bars = [Bar(c.name, getattr(c, rate).numerator, getattr(c, rate).denominator,
                        _href(c.code) if c.level != "grid" else None) for c in data.children]
            out.append(f'<div class="card rate" data-rate="{rate}"><h3>{esc(t["rate." + rate])}</h3>'
                       f'{bar_chart(t["rate." + rate], bars)}</div>')
    return "".join(out)


def _trend_section(ctx: PageContext, data: Overview, today: date) -> str:
    t = ctx.t
    if not data.trend:
        return f'<div class="card meta">{esc(t["no_trend"])}</div>'
    out = []
    for rate in RATES:
        points = [(day_label(t, date.fromisoformat(day), today), ratios[rate].numerator, ratios[rate].denominator)
                  for day, ratios in data.trend]
        out.append(f'<div class="card trend" data-rate="{rate}"><h3>{esc(t["rate." + rate])}</h3>'
                   f'{line_chart(t["rate." + rate], points)}</div>')
    return "".join(out)


def _grades_section(ctx: PageContext, data: Overview) -> str:
    t = ctx.t
    rows = [(grade or "none", t["grade." + grade] if grade else t["grade.none"],
             GRADE_COLOURS.get(grade or "", NO_GRADE_COLOUR), data.grades.get(grade, 0)) for grade in (*GRADES, None)]
    return f'<div class="card">{grade_chart(t["grade_distribution"], rows, sum(data.grades.values()))}</div>'


async def overview_handler(request: web.Request) -> web.Response:
    ctx, _ = page_user(request, *OVERVIEW_ROLES)
    code = request.query.get("area") or None
    rules = request.app[PAGES].rules

    def load() -> Overview | None:
        with read(request).connect() as conn:
            return overview(conn, rules, datetime.now(UTC), code)

    data = await asyncio.to_thread(load)
    today = datetime.now(UTC).astimezone(rules.zone).date()
    if data is None:
        raise page_not_found(ctx)
    t = ctx.t
    title = t["overview.title"] + (f" · {data.area.name}" if data.area is not None else "")
    body = (f'{_breadcrumb(ctx, data)}{_rates_section(ctx, data)}'
            f'<h2>{esc(t["trend"].format(days=TREND_DAYS))}</h2>{_trend_section(ctx, data, today)}'
            f'<h2>{esc(t["grade_distribution"])}</h2>{_grades_section(ctx, data)}')
    return render_page(ctx, title, body)
