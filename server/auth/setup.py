"""Wires authentication into the application: the middleware that resolves
the user for every request, the login throttle and /api/v1/session."""

from __future__ import annotations

from aiohttp import web

from server.auth import routes
from server.auth.appkeys import THROTTLE
from server.auth.enforce import policy_middleware
from server.auth.middleware import auth_middleware
from server.auth.throttle import LoginThrottle


def setup(app: web.Application) -> None:
    # First in the chain: every later middleware and handler can ask who it is.
    app.middlewares.append(auth_middleware)
    # Then each route's declared policy, before any handler reads data.
    app.middlewares.append(policy_middleware)
    app[THROTTLE] = LoginThrottle()
    routes.add_routes(app)
