"""Recording a refused plate token from any entry point (the scan pages,
the public declarations API): a row in scan_rejections and a log line,
within the per-client and overall budget; counted either way."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from aiohttp import web

from server.appkeys import ENGINE
from server.plates.appkeys import PLATE_KEYS
from server.plates.errors import TokenRejected
from server.plates.service import log_rejection

log = logging.getLogger(__name__)
# Expired and revoked plates existed: "gone" rather than "not found".
GONE_REASONS = ("expired", "revoked")


def status_for(rejected: TokenRejected) -> int:
    return 410 if rejected.reason in GONE_REASONS else 404


async def record_refusal(request: web.Request, token: str, rejected: TokenRejected) -> None:
    client = request.remote or "unknown"
    if not request.app[PLATE_KEYS].rejections.admit(client, rejected.reason):
        return
    # Whatever was in the URL: no control characters (PostgreSQL text
    # refuses NUL) into the table or the log.
    shown = "".join(ch if ch.isprintable() else "?" for ch in token[:64])
    user_agent = "".join(ch for ch in request.headers.get("User-Agent", "") if ch.isprintable()) or None

    def write() -> None:
        with request.app[ENGINE].begin() as conn:
            log_rejection(conn, datetime.now(UTC), rejected, shown, client=client, user_agent=user_agent)

    try:
        await asyncio.to_thread(write)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not log a refused plate scan (%s): %s", rejected.reason, exc)
