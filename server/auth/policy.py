"""Who the request is from, and what each role may do.

Every route declares its policy where its handler is defined, with
``@allow(roles..., path=..., body=..., query=..., form=...)`` or
``@public(...)``: who may call it, and the kind of every object it names
in the path, the JSON body, the query string or a form. The middleware in
server/auth/enforce.py checks both before the handler runs (roles first,
then each named object against the caller's scope, server/auth/scopes.py);
``check_policies`` refuses to start an application with a route that
declares nothing. docs/auth.md's table is generated from these
declarations (``python -m server.auth.table``)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from aiohttp import web

from server.auth.identity import AUTH_KEY, AuthUser, RequestAuth, current_user, request_auth
from server.auth.scopes import KINDS, reaches
from server.web.marks import marked

ROLES = ("admin", "landlord", "coordinator", "police")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Where = Literal["path", "body", "query", "form"]
POLICY_ATTR = "__rentgate_policy__"


@dataclass(frozen=True)
class Ref:
    """An object a route names: its kind (server/auth/scopes.KINDS), where
    the request carries it, and the parameter or field name. A body, query
    or form field is checked when present; a path one always."""

    kind: str
    where: Where
    name: str


@dataclass(frozen=True)
class RoutePolicy:
    roles: tuple[str, ...]  # empty: anyone, logged in or not
    refs: tuple[Ref, ...] = ()
    # A person-facing page: a browser without a login goes to /login.
    page: bool = False
    # What the handler narrows further, in words, for docs/auth.md
    # (e.g. "lists only the caller's buildings").
    rule: str = ""

    @property
    def public(self) -> bool:
        return not self.roles


def _refs(where: Where, named: Mapping[str, str]) -> tuple[Ref, ...]:
    return tuple(Ref(kind, where, name) for name, kind in named.items())


def allow(*roles: str, path: Mapping[str, str] | None = None, body: Mapping[str, str] | None = None,
          query: Mapping[str, str] | None = None, form: Mapping[str, str] | None = None,
          page: bool = False, rule: str = "") -> Callable[[Handler], Handler]:
    """Declare who may call a route and the kind of each object it names,
    e.g. ``@allow("admin", "landlord", path={"id": "unit"}, body={"person_id": "person"})``."""
    unknown = [r for r in roles if r not in ROLES]
    if not roles or unknown:
        raise ValueError(f"allow() needs roles among {ROLES}, got {roles}")
    refs = (_refs("path", path or {}) + _refs("body", body or {}) + _refs("query", query or {})
            + _refs("form", form or {}))
    return _declare(RoutePolicy(tuple(roles), refs, page, rule))


def public(rule: str, *, page: bool = False) -> Callable[[Handler], Handler]:
    """Declare a route anyone may call; ``rule`` says what protects it instead
    (a signed plate token, a rate limit, ...)."""
    return _declare(RoutePolicy((), (), page, rule))


def _declare(policy: RoutePolicy) -> Callable[[Handler], Handler]:
    return marked(POLICY_ATTR, policy)


def policy_of(handler: object) -> RoutePolicy | None:
    found = getattr(handler, POLICY_ATTR, None)
    return found if isinstance(found, RoutePolicy) else None


class MissingPolicy(RuntimeError):
    """A route without a declared policy (or naming a path parameter it
    does not have): the application does not start."""


def check_policies(app: web.Application) -> None:
    problems = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        where = f"{route.method} {route.resource.canonical if route.resource else '?'}"
        policy = policy_of(route.handler)
        if policy is None:
            problems.append(f"{where}: no @allow or @public")
            continue
        for ref in policy.refs:
            if ref.kind not in KINDS:
                problems.append(f"{where}: unknown object kind {ref.kind!r}")
            if ref.where == "path" and "{" + ref.name not in where:
                problems.append(f"{where}: no path parameter {ref.name!r}")
    if problems:
        raise MissingPolicy("routes without a valid policy:\n  " + "\n  ".join(problems))


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


__all__ = ["AUTH_KEY", "AuthUser", "RequestAuth", "current_user", "request_auth"]


def can_manage_building(conn: sa.Connection, user: AuthUser, building_id: int) -> bool:
    """Is the building in the user's scope (server/auth/scopes.py)?"""
    return reaches(conn, user, "building", building_id)


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
