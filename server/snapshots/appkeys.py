"""Typed application-state keys of the snapshots slice."""

from __future__ import annotations

from aiohttp import web

from server.web.ratelimit import RateLimiter

UPLOAD_LIMITER = web.AppKey("snapshot_upload_limiter", RateLimiter)
