"""Who the request is from, and what each role may do. The middleware in
server/auth/middleware.py resolves the user; handlers ask here."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps

import sqlalchemy as sa
from aiohttp import web

from server.db.models import Building
from server.grid.scope import coordinator_has_building

ROLES = ("admin", "landlord", "coordinator", "police")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class AuthUser:
    id: int
    username: str
    role: str
    display_name: str


@dataclass(frozen=True)
class RequestAuth:
    """What the middleware learnt about the request. ``token`` is the raw
    session token (never logged), needed to derive the CSRF token."""

    user: AuthUser
    kind: str  # "cookie" | "token"
    token: str


AUTH_KEY = web.RequestKey("rentgate_auth", RequestAuth)


def request_auth(request: web.Request) -> RequestAuth | None:
    return request.get(AUTH_KEY)


def current_user(request: web.Request) -> AuthUser | None:
    auth = request_auth(request)
    return auth.user if auth is not None else None


def _json_error(cls: type[web.HTTPClientError], error: str, detail: str) -> web.HTTPClientError:
    return cls(text=json.dumps({"error": error, "detail": detail}), content_type="application/json")


def unauthorized(detail: str = "log in or send Authorization: Bearer <token>") -> web.HTTPClientError:
    exc = _json_error(web.HTTPUnauthorized, "unauthorized", detail)
    # RFC 9110: a 401 names the scheme that would work.
    exc.headers["WWW-Authenticate"] = 'Bearer realm="rentgate"'
    return exc


def forbidden(detail: str = "your role may not do this") -> web.HTTPClientError:
    return _json_error(web.HTTPForbidden, "forbidden", detail)


def require_user(request: web.Request, *roles: str) -> AuthUser:
    """The logged-in user, or 401 (nobody) / 403 (wrong role). No roles: any
    logged-in user."""
    user = current_user(request)
    if user is None:
        raise unauthorized()
    if roles and user.role not in roles:
        raise forbidden(f"needs role {' or '.join(roles)}")
    return user


def requires(*roles: str) -> Callable[[Handler], Handler]:
    """Decorator form of require_user for handlers that need nothing else."""

    def wrap(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            require_user(request, *roles)
            return await handler(request)

        return guarded

    return wrap


def can_manage_building(conn: sa.Connection, user: AuthUser, building_id: int) -> bool:
    if user.role == "admin":
        return True
    if user.role == "coordinator":
        # A coordinator works the buildings of the grids assigned to them
        # (grid_coordinators; server/grid/scope.py).
        return coordinator_has_building(conn, user.id, building_id)
    if user.role == "landlord":
        owner = conn.execute(sa.select(Building.landlord_user_id).where(Building.id == building_id)).scalar()
        return owner is not None and int(owner) == user.id
    return False


def require_building(conn: sa.Connection, user: AuthUser, building_id: int) -> None:
    if not can_manage_building(conn, user, building_id):
        raise forbidden("not your building")


def actor_of(user: AuthUser) -> str:
    return f"user:{user.id}"


def csrf_of(request: web.Request) -> str | None:
    """The token forms must send back (hidden field "csrf") for a cookie session."""
    from server.auth.sessions import csrf_token

    auth = request_auth(request)
    if auth is None or auth.kind != "cookie":
        return None
    return csrf_token(auth.token)


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def login_redirect(request: web.Request) -> web.HTTPSeeOther:
    from urllib.parse import urlencode

    return web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))


def require_page_user(request: web.Request, *roles: str) -> AuthUser:
    """require_user for pages: a browser (Accept: text/html) without a login is
    sent to /login?next=<path> (303) instead of getting a bare 401."""
    if current_user(request) is None and wants_html(request):
        raise login_redirect(request)
    return require_user(request, *roles)
