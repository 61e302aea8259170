"""Wires the purge job into the application: when the server ingests
(``run_jobs``), task "retention-purge" runs at start and every
``purge_interval_s`` (server/retention/job.py). A server that only serves
the API (a read replica) purges nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from server.appkeys import ENGINE, METRIC_SOURCES, SETTINGS
from server.audit.appkeys import AUDIT
from server.media.errors import MediaUnavailable
from server.media.store import MediaStore
from server.reconcile.watermarks import advancing
from server.registry.appkeys import RULES
from server.retention.appkeys import PURGE_JOB
from server.retention.job import PurgeJob
from server.retention.metrics import render
from server.retention.purge import AuditSink
from server.rules import load_rules
from server.snapshots.store import snapshot_files
from server.web.errors import Unavailable


class AuditLogMissing(Unavailable):
    """The application has no audit log: nothing is purged without one."""


async def _retention_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    rules = app.get(RULES)
    if rules is None:
        rules = await asyncio.to_thread(load_rules, settings.rules_file)

    def audit_log() -> AuditSink:
        found = app.get(AUDIT)
        if found is None:
            raise AuditLogMissing("the audit log is not set up; the purge waits for it")
        return found

    def snapshot_folder() -> MediaStore | None:
        try:
            return snapshot_files(settings)
        except MediaUnavailable:
            return None

    job = PurgeJob(app[ENGINE], zone=rules.zone, retention_days=settings.event_retention_days,
                   interval_s=settings.purge_interval_s, audit=audit_log,
                   snapshot_retention_days=settings.snapshot_retention_days, snapshot_files=snapshot_folder,
                   watermarks=advancing(rules))
    app[PURGE_JOB] = job
    job.start()
    yield
    await job.stop()


def setup(app: web.Application, *, run_jobs: bool) -> None:
    if run_jobs:
        app.cleanup_ctx.append(_retention_ctx)
        # Registered before the application starts (its state is frozen then).
        app.setdefault(METRIC_SOURCES, []).append(
            lambda: render(app[PURGE_JOB].metrics) if PURGE_JOB in app else "")
