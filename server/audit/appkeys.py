"""Typed application-state key of the audit slice."""

from __future__ import annotations

from aiohttp import web

from server.audit.log import AuditLog

AUDIT = web.AppKey("rentgate_audit", AuditLog)
