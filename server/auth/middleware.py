"""Resolves who the request is from (once, with one indexed query) and
enforces CSRF for cookie sessions. Handlers decide what the user may do
(server/auth/policy.py)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from aiohttp import web

from server.appkeys import ENGINE, SETTINGS
from server.auth.enforce import (
    SCOPE_VERDICT,
    UNCHECKED,
    Named,
    Refused,
    first_outside_on,
    named_objects,
    needs_scope_check,
)
from server.auth.policy import AUTH_KEY, RequestAuth, RoutePolicy, forbidden, policy_of, unauthorized
from server.auth.sessions import SESSION_COOKIE, ResolvedSession, csrf_matches, resolve_session, touch
from server.db.read_pool import read_only, with_retry
from server.web.errors import InvalidInput

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
# Logging in does not use the authority of an existing session, so a stale
# cookie must not stop it.
CSRF_EXEMPT = frozenset({("POST", "/api/v1/session"), ("POST", "/login")})


# What secrets.token_urlsafe makes (server/auth/sessions.py). Anything else
# cannot be a session, and must not reach hashing: a header byte that is not
# UTF-8 arrives as a lone surrogate, which .encode() refuses with a 500.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


def well_formed(token: str | None) -> bool:
    return token is not None and _TOKEN.fullmatch(token) is not None


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _lookup(app: web.Application, token: str, now: datetime, idle: timedelta,
            scope: tuple[RoutePolicy, Named] | None) -> tuple[ResolvedSession | None, object]:
    """The session, and (when the route names objects) the scope verdict
    for its user: both on one connection in one thread hop, since every
    scoped page and API call needs both (server/auth/enforce.py)."""
    # Every request with a cookie or token comes through here: the read goes
    # to the autocommit pool, so it is one prepared statement and one round
    # trip, not a ping, a BEGIN, the SELECT and a ROLLBACK.
    def read() -> tuple[ResolvedSession | None, object]:
        with read_only(app) as conn:
            resolved = resolve_session(conn, token, now, idle=idle)
            verdict: object = UNCHECKED
            if resolved is not None and scope is not None and needs_scope_check(resolved.user, scope[0]):
                verdict = first_outside_on(conn, resolved.user, scope[1])
            return resolved, verdict

    resolved, verdict = with_retry(read)
    if resolved is not None and resolved.needs_touch:
        try:
            with app[ENGINE].begin() as conn:
                touch(conn, resolved.digest, now)
        except sa.exc.OperationalError as exc:
            # Busy database: the request is still authentic; the next one touches.
            log.warning("could not record session use: %s", exc)
    return resolved, verdict


async def _scope_to_check(request: web.Request) -> tuple[RoutePolicy, Named] | None:
    """The route's policy and the objects the request names, when there are
    any to check; anything unusable is left to the policy middleware, which
    answers it."""
    if request.match_info.http_exception is not None:
        return None
    policy = policy_of(request.match_info.route.handler)
    if policy is None or not policy.refs:
        return None
    try:
        return policy, await named_objects(request, policy)
    except (Refused, InvalidInput):
        return None


async def _csrf_offered(request: web.Request) -> str | None:
    offered = request.headers.get(CSRF_HEADER)
    if offered is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        # post() caches the parsed form, so the handler can read it again.
        value = (await request.post()).get(CSRF_FIELD)
        offered = value if isinstance(value, str) else None
    # Compared as bytes later: only a well-formed token can match anyway.
    return offered if offered is not None and offered.isascii() and offered.isprintable() else None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    bearer = _bearer(request)
    if bearer is not None and not well_formed(bearer):
        raise unauthorized("invalid, expired or revoked token")
    token = bearer or request.cookies.get(SESSION_COOKIE)
    if token and not well_formed(token):
        token = None  # a mangled cookie is no session; the login page still works
    if token:
        idle = timedelta(hours=request.app[SETTINGS].session_idle_hours)
        try:
            scope = await _scope_to_check(request)
            resolved, verdict = await asyncio.to_thread(_lookup, request.app, token, datetime.now(UTC), idle, scope)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("database error checking a session for %s: %s", request.path, exc)
            return web.json_response({"error": "database_unavailable",
                                      "detail": "the database did not answer; try again"}, status=503)
        if resolved is None and bearer is not None:
            # A client that sends a token wants to know it no longer works.
            raise unauthorized("invalid, expired or revoked token")
        if resolved is not None:
            kind = "token" if bearer is not None else "cookie"
            request[AUTH_KEY] = RequestAuth(user=resolved.user, kind=kind, token=token)
            if verdict is not UNCHECKED:
                request[SCOPE_VERDICT] = verdict
            if (kind == "cookie" and request.method not in SAFE_METHODS
                    and (request.method, request.path) not in CSRF_EXEMPT
                    and not csrf_matches(token, await _csrf_offered(request))):
                raise forbidden(f"missing or wrong CSRF token (header {CSRF_HEADER} or form field {CSRF_FIELD})")
    return await handler(request)
