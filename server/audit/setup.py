"""Wires the audit log into the application: its writer always (every
police request needs it, also on a server that does not ingest), and the
periodic checkpoint when a signing key is at hand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from server.appkeys import ENGINE, SETTINGS
from server.audit.appkeys import AUDIT
from server.audit.errors import AuditKeyUnavailable
from server.audit.keys import AuditKey, load_key
from server.audit.log import AuditLog

log = logging.getLogger(__name__)


async def _audit_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    audit = AuditLog(app[ENGINE], key=await _key_or_none(app),
                     checkpoint_interval_s=settings.audit_checkpoint_interval_s)
    app[AUDIT] = audit
    audit.start()
    yield
    await audit.stop()


async def _key_or_none(app: web.Application) -> AuditKey | None:
    try:
        return await asyncio.to_thread(load_key, app[SETTINGS], create=True)
    except AuditKeyUnavailable as exc:
        # Not fatal: the log is still written and chained, and
        # `rentgate audit checkpoint` signs everything once a key is set.
        log.warning("audit checkpoints are not signed: %s", exc)
        return None


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_audit_ctx)
