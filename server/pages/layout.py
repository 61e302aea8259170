"""The shell every person-facing page shares: phone-first CSS, a language
switch remembered in a cookie, the logged-in user and a logout button.

Pages are plain HTML built from f-strings; every value that comes from a user
or the database goes through ``esc`` (html.escape)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from html import escape
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from server.auth.policy import AuthUser, csrf_of, current_user
from server.pages.i18n import LANG_COOKIE, LANGS, TEXTS, pick_language

LANG_COOKIE_MAX_AGE_S = 365 * 24 * 3600
GRADE_COLOURS = {"trusted": "#1e8e3e", "normal": "#f9ab00", "watch": "#e8710a", "strict": "#d93025"}
NO_GRADE_COLOUR = "#9aa0a6"
# WCAG AA for normal-size text.
MIN_CONTRAST = 4.5
MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,"PingFang SC","Noto Sans CJK SC",sans-serif;margin:0;background:#f5f6f8;color:#222;
font-size:16px;line-height:1.45}
header.top{display:flex;flex-wrap:wrap;gap:6px 12px;align-items:center;justify-content:space-between;
padding:8px 12px;background:#1a4d8f;color:#fff}
header.top a,header.top button{color:#fff}
header.top .who{font-size:.9rem}
main{padding:12px;max-width:760px;margin:0 auto}
h1{font-size:1.25rem;margin:4px 0 10px} h2{font-size:1.05rem;margin:18px 0 8px}
a{color:#1a4d8f}
.card{background:#fff;border-radius:8px;padding:12px;margin:0 0 10px;box-shadow:0 1px 2px rgba(0,0,0,.08);
overflow-wrap:anywhere}
.card h3{margin:0 0 6px;font-size:1rem}
.meta{color:#555;font-size:.9rem}
.row{display:flex;flex-wrap:wrap;gap:8px;align-items:center}
.chip{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-size:.85rem;white-space:nowrap}
.chip.none{background:#9aa0a6;color:#000}
.stat{display:inline-block;margin-right:12px;white-space:nowrap}
label{display:block;margin:10px 0 4px;font-weight:600}
input,select,textarea{width:100%;font-size:16px;padding:10px;border:1px solid #b0b6be;border-radius:6px;
background:#fff}
input.bad{border-color:#d93025;background:#fff5f5}
.hint{color:#666;font-size:.85rem;margin-top:2px}
.field-error{color:#d93025;font-size:.9rem;margin-top:4px}
button,.button{display:inline-block;min-height:44px;min-width:44px;padding:10px 16px;font-size:16px;
border:0;border-radius:6px;background:#1a4d8f;color:#fff;text-decoration:none;cursor:pointer}
button.secondary{background:#5f6368} button.danger{background:#d93025}
header.top button{min-height:36px;background:transparent;border:1px solid #fff;padding:4px 10px}
.inline{display:inline}
.flash{background:#e6f4ea;border-left:4px solid #1e8e3e;padding:10px;margin-bottom:10px}
.errors{background:#fce8e6;border-left:4px solid #d93025;padding:10px;margin-bottom:10px}
.waiting{background:#fef7e0;border-left:4px solid #f9ab00;padding:12px;font-size:1.1rem}
table{width:100%;border-collapse:collapse;background:#fff}
th,td{padding:8px 6px;border-bottom:1px solid #e3e5e8;text-align:left;vertical-align:top}
details summary{min-height:44px;padding:10px 0;cursor:pointer;color:#1a4d8f}
svg{display:block;width:100%;height:auto}
nav.main a{margin-right:12px;color:#fff}
"""


@dataclass(frozen=True)
class PageContext:
    """What every page needs from the request: language, texts, the user and
    the CSRF token for its forms."""

    lang: str
    user: AuthUser | None
    csrf: str | None
    path: str
    lang_from_query: bool
    # The query minus lang and ok, so the language switch keeps e.g. ?area=.
    query: tuple[tuple[str, str], ...] = ()

    @property
    def t(self) -> dict[str, str]:
        return TEXTS[self.lang]

    def csrf_field(self) -> str:
        if self.csrf is None:
            return ""
        return f'<input type="hidden" name="csrf" value="{esc(self.csrf)}">'


def esc(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def context(request: web.Request) -> PageContext:
    lang_query = request.query.get("lang")
    lang = pick_language(request.query, request.cookies.get(LANG_COOKIE))
    keep = tuple((k, v) for k, v in request.query.items() if k not in ("lang", "ok"))
    return PageContext(lang=lang, user=current_user(request), csrf=csrf_of(request), path=request.path,
                       lang_from_query=lang_query in LANGS, query=keep)


def _luminance(colour: str) -> float:
    r, g, b = (int(colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4))

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def contrast(one: str, other: str) -> float:
    """WCAG contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    high, low = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def text_on(background: str) -> str:
    """White or black, whichever reads better on ``background``: the grade
    colours are fixed by the plates, and white on their green or amber is
    below 4.5:1."""
    return "#ffffff" if contrast("#ffffff", background) >= contrast("#000000", background) else "#000000"


def grade_chip(t: dict[str, str], grade: str | None) -> str:
    if grade not in GRADE_COLOURS:
        return f'<span class="chip none">{esc(t["grade.none"])}</span>'
    colour = GRADE_COLOURS[grade]
    return (f'<span class="chip grade-{grade}" style="background:{colour};color:{text_on(colour)}">'
            f'{esc(t["grade." + grade])}</span>')


def day_label(t: dict[str, str], day: date, today: date) -> str:
    """A day as ``12月5日`` (``5 Dec``), with the year when it is not this year's."""
    key = "day.this_year" if day.year == today.year else "day.other_year"
    return t[key].format(year=day.year, month=day.month, day=day.day, mon=MONTHS_EN[day.month - 1])


def when(t: dict[str, str], value: datetime | str | None, zone: ZoneInfo, now: datetime) -> str:
    """A moment as people write it, in the city's time zone: ``12月5日 14:03``
    this year, ``2025年12月5日 14:03`` (``5 Dec 2025 14:03``) otherwise, so an
    old reading never looks like today's."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    local = value.astimezone(zone)
    key = "when.this_year" if local.year == now.astimezone(zone).year else "when.other_year"
    return t[key].format(year=local.year, month=local.month, day=local.day, mon=MONTHS_EN[local.month - 1],
                         hm=local.strftime("%H:%M"))


def _header(ctx: PageContext) -> str:
    t = ctx.t
    other = "en" if ctx.lang == "zh" else "zh"
    href = f"{ctx.path}?{urlencode((*ctx.query, ('lang', other)))}"
    switch = f'<a class="lang" href="{esc(href)}">{esc(TEXTS[ctx.lang]["switch"])}</a>'
    if ctx.user is None:
        return f'<header class="top"><strong>{esc(t["app"])}</strong>{switch}</header>'
    links = [f'<a href="/landlord">{esc(t["nav.landlord"])}</a>'] if ctx.user.role in ("admin", "landlord",
                                                                                          "coordinator") else []
    if ctx.user.role in ("admin", "landlord"):
        links.append(f'<a href="/fleet">{esc(t["nav.fleet"])}</a>')
    if ctx.user.role in ("admin", "coordinator"):
        links.append(f'<a href="/">{esc(t["nav.status"])}</a>')
        links.append(f'<a href="/c">{esc(t["nav.grid"])}</a>')
        links.append(f'<a href="/overview">{esc(t["nav.overview"])}</a>')
    return (f'<header class="top"><nav class="main">{"".join(links)}</nav>'
            f'<span class="who">{esc(ctx.user.display_name)}</span>{switch}'
            f'<form class="inline" method="post" action="/logout">{ctx.csrf_field()}'
            f'<button type="submit">{esc(t["logout"])}</button></form></header>')


def page(ctx: PageContext, title: str, body: str, *, status: int = 200, head: str = "") -> web.Response:
    """``head``: trusted markup for <head> (a refresh, page CSS)."""
    html = f"""<!doctype html>
<html lang="{'zh-CN' if ctx.lang == 'zh' else 'en'}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">{head}
<title>{esc(title)} · {esc(ctx.t['app'])}</title>
<style>{CSS}</style></head><body>
{_header(ctx)}
<main>
<h1>{esc(title)}</h1>
{body}
</main></body></html>"""
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    # Identity numbers may be on the page: keep it out of shared caches.
    response.headers["Cache-Control"] = "no-store"
    if ctx.lang_from_query:
        response.set_cookie(LANG_COOKIE, ctx.lang, max_age=LANG_COOKIE_MAX_AGE_S, httponly=True, samesite="Lax")
    return response


def home_of(user: AuthUser | None) -> str:
    """Where "back to the home page" goes: the page each role starts on."""
    if user is None:
        return "/login"
    if user.role == "police":
        return "/police"
    return "/overview" if user.role in ("admin", "coordinator") else "/landlord"


def message_page(ctx: PageContext, status: int, title_key: str, text: str) -> web.Response:
    body = (f'<div class="card message" data-status="{status}"><p>{esc(text)}</p>'
            f'<p><a class="button home" href="{home_of(ctx.user)}">{esc(ctx.t["err.home"])}</a></p></div>')
    return page(ctx, ctx.t[title_key], body, status=status)


ERROR_STATUSES = (400, 401, 403, 404, 405, 413, 429, 500, 503)


def error_page(ctx: PageContext, status: int) -> web.Response:
    """The page for an HTTP error, in words and with a way home; statuses
    without texts of their own say "cannot be done"."""
    key = f"err.{status}" if status in ERROR_STATUSES else "err.other"
    return message_page(ctx, status, key + ".title", ctx.t[key + ".text"])


def forbidden(ctx: PageContext) -> web.Response:
    return error_page(ctx, 403)


def not_found(ctx: PageContext) -> web.Response:
    return error_page(ctx, 404)


def flash(ctx: PageContext, request: web.Request) -> str:
    """The one-line confirmation a POST redirected with (``?ok=<key>``)."""
    key = request.query.get("ok", "")
    if key and key.endswith("_ok") and key in ctx.t:
        return f'<div class="flash" role="status">{esc(ctx.t[key])}</div>'
    return ""


def login_redirect(request: web.Request) -> web.HTTPFound:
    return web.HTTPFound("/login?" + urlencode({"next": request.path_qs}))
