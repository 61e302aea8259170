"""/api/v1/session: log in (cookie), who am I, log out."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from server.appkeys import ENGINE, SETTINGS
from server.auth import api_doc as doc
from server.auth.appkeys import THROTTLE
from server.auth.policy import ROLES, AuthUser, allow, csrf_of, public, request_auth, require_user
from server.auth.sessions import (
    COOKIE_ABSOLUTE,
    SESSION_COOKIE,
    csrf_token,
    end_session,
    purge_expired,
    start_session,
)
from server.auth.users import authenticate
from server.web.body import json_body
from server.web.errors import InvalidInput
from server.web.openapi import Reply, api

WRONG_LOGIN = "wrong username or password"


class LoginThrottled(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed logins; retry after {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class LoginResult:
    user: AuthUser
    token: str
    csrf: str


def _start(engine: sa.Engine, username: str, password: str, idle: timedelta) -> tuple[AuthUser, str] | None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        user = authenticate(conn, username, password)
        if user is None:
            return None
        purge_expired(conn, now, user.id, idle=idle)
        return user, start_session(conn, now, user.id, kind="cookie", ttl=COOKIE_ABSOLUTE)


async def log_in(request: web.Request, username: str, password: str) -> LoginResult | None:
    """Checks the password under the throttle and starts a cookie session.
    None: wrong username or password (deliberately not saying which).
    Raises LoginThrottled. The caller sets the cookie (set_session_cookie)."""
    throttle = request.app[THROTTLE]
    keys = ("user:" + username.lower(), "addr:" + (request.remote or "?"))
    wait = throttle.retry_after(*keys)
    if wait > 0:
        raise LoginThrottled(wait)
    idle = timedelta(hours=request.app[SETTINGS].session_idle_hours)
    started = await asyncio.to_thread(_start, request.app[ENGINE], username, password, idle)
    if started is None:
        throttle.failed(*keys)
        return None
    throttle.succeeded(keys[0])
    user, token = started
    return LoginResult(user=user, token=token, csrf=csrf_token(token))


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=int(COOKIE_ABSOLUTE.total_seconds()), path="/",
                        httponly=True, samesite="Lax", secure=request.secure)


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")


async def log_out(request: web.Request) -> None:
    """Ends the request's session (cookie or bearer token) in the database."""
    auth = request_auth(request)
    if auth is None:
        return

    def end() -> None:
        with request.app[ENGINE].begin() as conn:
            end_session(conn, auth.token)

    await asyncio.to_thread(end)


# Far above any real user name or password; hashing megabytes is work an
# anonymous caller should not get for free.
MAX_CREDENTIAL_CHARS = 1024


def _bad(field: str, problem: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": "invalid_input", "field": field, "detail": problem}),
                              content_type="application/json")


async def _credentials(request: web.Request) -> tuple[str, str]:
    try:
        body: Any = await json_body(request)
    except InvalidInput as exc:
        raise _bad("body", f"{exc.problem}; expected a JSON object {{username, password}}") from None
    if not isinstance(body, dict):
        raise _bad("body", "expected a JSON object {username, password}")
    values = []
    for field in ("username", "password"):
        value = body.get(field)
        if not isinstance(value, str) or not value:
            raise _bad(field, "required")
        if len(value) > MAX_CREDENTIAL_CHARS:
            raise _bad(field, f"longer than {MAX_CREDENTIAL_CHARS} characters")
        values.append(value)
    return values[0], values[1]


async def login_handler(request: web.Request) -> web.Response:
    username, password = await _credentials(request)
    try:
        result = await log_in(request, username, password)
    except LoginThrottled as exc:
        return web.json_response({"error": "too_many_attempts", "detail": str(exc)}, status=429,
                                 headers={"Retry-After": str(math.ceil(exc.retry_after_s))})
    if result is None:
        return web.json_response({"error": "unauthorized", "detail": WRONG_LOGIN}, status=401)
    response = web.json_response({"user": asdict(result.user), "csrf": result.csrf})
    set_session_cookie(request, response, result.token)
    return response


async def whoami_handler(request: web.Request) -> web.Response:
    user = require_user(request)
    auth = request_auth(request)
    return web.json_response({"user": asdict(user), "csrf": csrf_of(request),
                              "kind": auth.kind if auth is not None else None})


async def logout_handler(request: web.Request) -> web.Response:
    await log_out(request)
    response = web.Response(status=204)
    clear_session_cookie(response)
    return response


def add_routes(app: web.Application) -> None:
    r = app.router
    # What each route takes and answers, for the OpenAPI document (server/web/openapi.py).
    r.add_post("/api/v1/session", public("throttled per user name and address")(
        api("Log in: sets the session cookie", tag="session", body=doc.LoginIn, responses={200: doc.LoggedIn},
            errors=(401, 429))(login_handler)))
    r.add_get("/api/v1/session", allow(*ROLES, rule="the caller's own session")(
        api("Who the caller is", tag="session", responses={200: doc.Session})(whoami_handler)))
    r.add_delete("/api/v1/session", allow(*ROLES, rule="the caller's own session")(
        api("Log out: ends the cookie session, or revokes the bearer token sent", tag="session",
            responses={204: Reply(None, "logged out")})(logout_handler)))
