"""The shell every person-facing page shares: phone-first CSS, a language
switch remembered in a cookie, the logged-in user and a logout button.

Pages are plain HTML built from f-strings; every value that comes from a user
or the database goes through ``esc`` (html.escape)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from urllib.parse import urlencode

from aiohttp import web

from server.auth.policy import AuthUser, csrf_of, current_user
from server.pages.i18n import LANG_COOKIE, LANGS, TEXTS, pick_language

LANG_COOKIE_MAX_AGE_S = 365 * 24 * 3600
GRADE_COLOURS = {"trusted": "#1e8e3e", "normal": "#f9ab00", "watch": "#e8710a", "strict": "#d93025"}

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
.chip.none{background:#9aa0a6}
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
    lang = pick_language(request.query, request.headers.get("Accept-Language"), request.cookies.get(LANG_COOKIE))
    keep = tuple((k, v) for k, v in request.query.items() if k not in ("lang", "ok"))
    return PageContext(lang=lang, user=current_user(request), csrf=csrf_of(request), path=request.path,
                       lang_from_query=lang_query in LANGS, query=keep)


def grade_chip(t: dict[str, str], grade: str | None) -> str:
    if grade not in GRADE_COLOURS:
        return f'<span class="chip none">{esc(t["grade.none"])}</span>'
    return (f'<span class="chip grade-{grade}" style="background:{GRADE_COLOURS[grade]}">'
            f'{esc(t["grade." + grade])}</span>')


def _header(ctx: PageContext) -> str:
    t = ctx.t
    other = "en" if ctx.lang == "zh" else "zh"
    href = f"{ctx.path}?{urlencode((*ctx.query, ('lang', other)))}"
    switch = f'<a class="lang" href="{esc(href)}">{esc(TEXTS[ctx.lang]["switch"])}</a>'
    if ctx.user is None:
        return f'<header class="top"><strong>{esc(t["app"])}</strong>{switch}</header>'
    links = [f'<a href="/landlord">{esc(t["nav.landlord"])}</a>'] if ctx.user.role in ("admin", "landlord",
                                                                                          "coordinator") else []
    if ctx.user.role in ("admin", "coordinator"):
        links.append(f'<a href="/c">{esc(t["nav.grid"])}</a>')
        links.append(f'<a href="/overview">{esc(t["nav.overview"])}</a>')
    return (f'<header class="top"><nav class="main">{"".join(links)}</nav>'
            f'<span class="who">{esc(ctx.user.display_name)}</span>{switch}'
            f'<form class="inline" method="post" action="/logout">{ctx.csrf_field()}'
            f'<button type="submit">{esc(t["logout"])}</button></form></header>')


def page(ctx: PageContext, title: str, body: str, *, status: int = 200) -> web.Response:
    html = f"""<!doctype html>
<html lang="{'zh-CN' if ctx.lang == 'zh' else 'en'}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
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


def message_page(ctx: PageContext, status: int, title_key: str, text: str) -> web.Response:
    body = f'<div class="card"><p>{esc(text)}</p><p><a href="/landlord">{esc(ctx.t["back"])}</a></p></div>'
    return page(ctx, ctx.t[title_key], body, status=status)


def forbidden(ctx: PageContext) -> web.Response:
    return message_page(ctx, 403, "forbidden.title", ctx.t["forbidden.text"])


def not_found(ctx: PageContext) -> web.Response:
    return message_page(ctx, 404, "notfound.title", ctx.t["notfound.text"])


def flash(ctx: PageContext, request: web.Request) -> str:
    """The one-line confirmation a POST redirected with (``?ok=<key>``)."""
    key = request.query.get("ok", "")
    if key and key.endswith("_ok") and key in ctx.t:
        return f'<div class="flash" role="status">{esc(ctx.t[key])}</div>'
    return ""


def login_redirect(request: web.Request) -> web.HTTPFound:
    return web.HTTPFound("/login?" + urlencode({"next": request.path_qs}))
