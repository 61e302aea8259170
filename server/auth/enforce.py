"""Enforces each route's declared policy (server/auth/policy.py) before its
handler runs: the caller's role, then every object the request names in
its path, JSON body, query string or form, checked against the caller's
scope (server/auth/scopes.py).

An object outside the caller's scope gets exactly the answer a
nonexistent one gets, so a refusal says nothing about what exists: 404
"no such <kind>" for a path, 400 naming the field for a body, query or
form. Ids that the database cannot hold are refused here too, before any
query sees them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from aiohttp import web

from rentgate import wire
from server.auth.policy import (
    AuthUser,
    Ref,
    RoutePolicy,
    current_user,
    forbidden,
    login_redirect,
    policy_of,
    unauthorized,
    wants_html,
)
from server.auth.scopes import reaches
from server.db.read_pool import read_only, with_retry
from server.web.body import json_body
from server.web.errors import InvalidInput
from server.web.ids import json_id, parse_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _wants_json(request: web.Request) -> bool:
    """A script asking a page for JSON gets a 401 it can act on; a browser
    (or anything else) is sent to the login page."""
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and not wants_html(request)


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def _refusal(request: web.Request, ref: Ref) -> web.StreamResponse:
    """The same answer for "does not exist" and "not yours"."""
    detail = f"no such {ref.kind}"
    if ref.where == "path":
        if _is_api(request):
            return web.json_response({"error": "not_found", "detail": detail}, status=404)
        raise web.HTTPNotFound()
    if _is_api(request):
        return web.json_response({"error": "bad_parameter", "field": ref.name, "detail": detail}, status=400)
    raise web.HTTPBadRequest()


def _bad_input(request: web.Request, exc: InvalidInput) -> web.StreamResponse:
    if _is_api(request):
        return web.json_response({"error": "bad_parameter", "field": exc.field, "detail": exc.problem}, status=400)
    raise web.HTTPBadRequest()


def _path_value(request: web.Request, ref: Ref) -> int | str:
    raw = request.match_info.get(ref.name, "")
    if ref.kind == "gateway":
        if not wire.is_gateway_id(raw):
            raise Refused(ref)
        return raw
    value = parse_id(raw)
    if value is None:
        raise Refused(ref)
    return value


async def _field_value(request: web.Request, ref: Ref) -> int | str | None:
    """The id a body, query or form field carries; None when absent."""
    raw: object
    if ref.where == "body":
        body = await json_body(request)
        if not isinstance(body, dict) or body.get(ref.name) is None:
            return None
        raw = body[ref.name]
        value = raw if ref.kind == "gateway" and isinstance(raw, str) else json_id(raw)
    else:
        source = request.query if ref.where == "query" else await request.post()
        raw = source.get(ref.name)
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str):
            raise InvalidInput(ref.name, "must be text")
        value = raw if ref.kind == "gateway" else parse_id(raw)
    if value is None or (isinstance(value, str) and not wire.is_gateway_id(value)):
        raise InvalidInput(ref.name, f"must be the id of a {ref.kind}: a whole number from 1")
    return value


Named = list[tuple[Ref, int | str]]
# The auth middleware checks the scope in the same database round trip that
# resolves the session (one thread hop, one connection instead of two) and
# leaves its verdict here: the first object outside the caller's scope, or
# None when every one is inside.
SCOPE_VERDICT = web.RequestKey("rentgate_scope_verdict", object)
UNCHECKED = object()


class Refused(Exception):
    """A path id that names nothing (before any query)."""

    def __init__(self, ref: Ref) -> None:
        self.ref = ref


async def named_objects(request: web.Request, policy: RoutePolicy) -> Named:
    """The objects the request names, as the policy declares them; raises
    Refused (a path id that cannot be one) or InvalidInput (a field)."""
    named = []
    for ref in policy.refs:
        value = _path_value(request, ref) if ref.where == "path" else await _field_value(request, ref)
        if value is not None:
            named.append((ref, value))
    return named


def first_outside_on(conn: sa.Connection, user: AuthUser, named: Named) -> Ref | None:
    for ref, value in named:
        if not reaches(conn, user, ref.kind, value):
            return ref
    return None


def needs_scope_check(user: AuthUser, policy: RoutePolicy) -> bool:
    return user.role != "admin" and user.role in policy.roles and bool(policy.refs)


def _first_outside(app: web.Application, user: AuthUser, named: Named) -> Ref | None:
    def check() -> Ref | None:
        with read_only(app) as conn:
            return first_outside_on(conn, user, named)
    return with_retry(check)


@web.middleware
async def policy_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        return await handler(request)  # no route: aiohttp's 404 or 405
    policy = policy_of(request.match_info.route.handler)
    if policy is None:
        # check_policies stops an application like this from starting; a
        # route added later still fails closed.
        raise forbidden("this route declares no policy")
    user = current_user(request)
    if not policy.public:
        if user is None:
            if policy.page and not _wants_json(request):
                raise login_redirect(request)
            raise unauthorized()
        if user.role not in policy.roles:
            raise forbidden("your role may not do this")
    if not policy.refs:
        return await handler(request)
    try:
        named = await named_objects(request, policy)
    except Refused as exc:
        return _refusal(request, exc.ref)
    except InvalidInput as exc:
        return _bad_input(request, exc)
    if user is not None and user.role != "admin" and named:
        verdict = request.get(SCOPE_VERDICT, UNCHECKED)
        if verdict is UNCHECKED:
            verdict = await asyncio.to_thread(_first_outside, request.app, user, named)
        if isinstance(verdict, Ref):
            return _refusal(request, verdict)
    return await handler(request)
