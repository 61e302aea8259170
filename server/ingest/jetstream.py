"""Events from a NATS JetStream work queue (ingest_source=jetstream).

Being written (issue 15): until it lands, ``ingest_source=jetstream`` stops
ingest with this error rather than reading nothing silently."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from server.errors import ServerError

if TYPE_CHECKING:
    from server.ingest.consumer import IngestService
    from server.settings import ServerSettings


class JetStreamSource:
    def __init__(self, settings: ServerSettings, service: IngestService) -> None:
        self.settings = settings
        self.service = service

    async def run(self, stopping: asyncio.Event) -> None:
        raise ServerError("ingest_source=jetstream is not available yet")
