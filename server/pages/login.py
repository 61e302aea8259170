"""GET/POST /login and POST /logout: a cookie session for the pages, through
the same throttled login as /api/v1/session (server.auth.routes.log_in)."""

from __future__ import annotations

import logging

from aiohttp import web

from server.auth.routes import LoginThrottled, clear_session_cookie, log_in, log_out, set_session_cookie
from server.pages.forms import read_form, text
from server.pages.guard import OVERVIEW_ROLES, safe_next
from server.pages.layout import PageContext, context, esc, page

log = logging.getLogger(__name__)


def _form(ctx: PageContext, next_path: str, username: str = "", problem: str | None = None) -> str:
    t = ctx.t
    alert = f'<div class="errors" role="alert">{esc(problem)}</div>' if problem else ""
    return (f'{alert}<form class="card login" method="post" action="/login">'
            f'<input type="hidden" name="next" value="{esc(next_path)}">'
            f'<label for="f-username">{esc(t["login.username"])}</label>'
            f'<input id="f-username" name="username" value="{esc(username)}" autocomplete="username" required>'
            f'<label for="f-password">{esc(t["login.password"])}</label>'
            f'<input id="f-password" name="password" type="password" autocomplete="current-password" required>'
            f'<p><button type="submit">{esc(t["login.submit"])}</button></p></form>')


def _home(role: str) -> str:
    if role == "police":
        return "/police"
    return "/overview" if role in OVERVIEW_ROLES else "/landlord"


async def login_page(request: web.Request) -> web.Response:
    ctx = context(request)
    asked = request.query.get("next")
    # Empty: after login each role goes to its own home page.
    next_path = safe_next(asked) if asked else ""
    if ctx.user is not None and asked:
        raise web.HTTPSeeOther(next_path)
    return page(ctx, ctx.t["login.title"], _form(ctx, next_path))


async def login_submit(request: web.Request) -> web.Response:
    ctx = context(request)
    form = await read_form(request)
    username, password = text(form, "username"), form.get("password", "")
    next_given = text(form, "next")
    next_path = safe_next(next_given) if next_given else ""
    if not username or not password:
        return page(ctx, ctx.t["login.title"], _form(ctx, next_path, username, ctx.t["login.failed"]), status=400)
    try:
        result = await log_in(request, username, password)
    except LoginThrottled:
        return page(ctx, ctx.t["login.title"], _form(ctx, next_path, username, ctx.t["login.throttled"]),
                    status=429)
    if result is None:
        return page(ctx, ctx.t["login.title"], _form(ctx, next_path, username, ctx.t["login.failed"]), status=401)
    target = next_path or _home(result.user.role)
    response = web.HTTPSeeOther(target)
    set_session_cookie(request, response, result.token)
    log.info("user %s logged in to the pages", result.user.id)
    raise response


async def logout_submit(request: web.Request) -> web.Response:
    await log_out(request)
    response = web.HTTPSeeOther("/login")
    clear_session_cookie(response)
    raise response
