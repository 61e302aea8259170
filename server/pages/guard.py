"""Who may open a page: anonymous visitors go to /login (and come back),
wrong roles and other landlords' buildings get a 403 page, not JSON."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import sqlalchemy as sa
from aiohttp import web

from server.appkeys import ENGINE
from server.auth.policy import AuthUser, can_manage_building
from server.pages.layout import PageContext, context, forbidden, not_found

LANDLORD_ROLES = ("admin", "landlord", "coordinator")
OVERVIEW_ROLES = ("admin", "coordinator")


def _html_error(cls: type[web.HTTPException], response: web.Response) -> web.HTTPException:
    return cls(text=response.text, content_type="text/html", headers={"Cache-Control": "no-store"})


def page_user(request: web.Request, *roles: str) -> tuple[PageContext, AuthUser]:
    ctx = context(request)
    if ctx.user is None:
        raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
    if roles and ctx.user.role not in roles:
        raise _html_error(web.HTTPForbidden, forbidden(ctx))
    return ctx, ctx.user


def page_not_found(ctx: PageContext) -> web.HTTPException:
    return _html_error(web.HTTPNotFound, not_found(ctx))


async def require_building(request: web.Request, ctx: PageContext, user: AuthUser, building_id: int | None) -> int:
    """The building id, after checking the user manages it; 404 page for
    nothing, 403 page for someone else's."""
    if building_id is None:
        raise page_not_found(ctx)

    def allowed() -> bool:
        with request.app[ENGINE].connect() as conn:
            return can_manage_building(conn, user, building_id)

    if not await asyncio.to_thread(allowed):
        raise _html_error(web.HTTPForbidden, forbidden(ctx))
    return building_id


def read(request: web.Request) -> sa.Engine:
    return request.app[ENGINE]


def safe_next(target: str | None) -> str:
    """Only same-site paths: "/x" but not "//evil.example" or "/\\evil"."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or "\n" in target:
        return "/landlord"
    return target
