"""The server side of a district run, in this process and with its real
parts: a migrated database, an MQTT broker (the embedded one unless a URL is
given), the ingest service that stores what the gateways publish, the
identity-number vault and the reconciliation engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from rentgate.broker import EmbeddedBroker
from server.db.engine import create_engine
from server.db.migrate import upgrade
from server.ingest.consumer import IngestService
from server.ingest.store import EventStore
from server.reconcile.runner import Reconciler
from server.registry.pii import PiiVault, load_vault, write_key_file
from server.rules import CityRules
from server.settings import ServerSettings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    engine: sa.Engine
    vault: PiiVault
    reconciler: Reconciler
    ingest: IngestService
    mqtt_url: str
    database_url: str


@contextlib.asynccontextmanager
async def running(workdir: Path, rules: CityRules, *, database_url: str | None = None,
                  mqtt_url: str | None = None) -> AsyncIterator[Runtime]:
    """Everything started, and stopped again on the way out whatever happened."""
    async with contextlib.AsyncExitStack() as stack:
        if mqtt_url is None:
            broker = EmbeddedBroker("127.0.0.1", 0)
            await broker.start()
            stack.push_async_callback(broker.stop)
            mqtt_url = broker.url
        url = database_url or f"sqlite:///{workdir / 'district.sqlite3'}"
        engine = create_engine(url)
        stack.callback(engine.dispose)
        await asyncio.to_thread(upgrade, engine)
        vault = await asyncio.to_thread(_vault, workdir, url)
        # A client id of its own per run: a persistent session left by an
        # earlier run must not deliver that run's events into this database.
        settings = ServerSettings(database_url=url, mqtt_url=mqtt_url,
                                  mqtt_client_id=f"sim-district-server-{uuid.uuid4().hex[:8]}")
        ingest = IngestService(settings, EventStore(engine))
        task = asyncio.create_task(ingest.run(), name="district-ingest")

        async def stop_ingest() -> None:
            ingest.stop()
            await asyncio.gather(task, return_exceptions=True)

        stack.push_async_callback(stop_ingest)
        yield Runtime(engine, vault, Reconciler(engine, rules), ingest, mqtt_url, url)


def _vault(workdir: Path, database_url: str) -> PiiVault:
    """A SQLite database gets its key generated next to it; for PostgreSQL the
    run makes a throw-away key in its work folder."""
    if database_url.startswith("sqlite"):
        return load_vault(None, database_url)
    key = workdir / "pii.key"
    write_key_file(key)
    return load_vault(str(key), database_url)
