"""Who a request is from: the user the auth middleware resolved
(server/auth/middleware.py), kept on the request. A leaf module: the
scopes and the policy import it, it imports neither."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


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
