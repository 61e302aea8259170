"""Typed application-state key of the retention slice."""

from __future__ import annotations

from aiohttp import web

from server.retention.job import PurgeJob

PURGE_JOB = web.AppKey("retention_purge_job", PurgeJob)
