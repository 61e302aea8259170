"""Typed application-state keys of the auth package."""

from __future__ import annotations

from aiohttp import web

from server.auth.throttle import LoginThrottle

THROTTLE = web.AppKey("auth_throttle", LoginThrottle)
