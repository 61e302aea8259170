"""The police slice's application state."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiohttp import web

from server.police.quota import UsageMeter

METER = web.AppKey("rentgate_police_meter", UsageMeter)
# The city's zone: quotas count local days.
RULES_ZONE = web.AppKey("rentgate_police_zone", ZoneInfo)
