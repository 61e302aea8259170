"""Remote configuration as a running service: a change is committed in one
write transaction, then published; the publisher and the outcome task run
in the process that runs the MQTT services (``run_service``)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from aiohttp import web

from rentgate.outage import Outage
from server.access.keys import SigningKey
from server.access.routes import ACCESS
from server.appkeys import ENGINE, SETTINGS
from server.db.models import gateway_configs
from server.fleet import config_outcomes
from server.fleet.config_publisher import ConfigPublisher
from server.web.errors import Unavailable
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

OUTCOME_INTERVAL_S = 2.0
FULL_PASS_S = 300.0
# The versions the frequent pass looks at: the newest this many rows.
RECENT_IDS = 20_000
T = TypeVar("T")


class NoSigningKey(Unavailable):
    code = "no_signing_key"


class ConfigService:
    def __init__(self, engine: sa.Engine, key: SigningKey | None, key_problem: str | None,
                 publisher: ConfigPublisher | None, default_gate_s: float) -> None:
        self.engine = engine
        self._key = key
        self.key_problem = key_problem
        self.publisher = publisher
        self.default_gate_s = default_gate_s

    @property
    def key(self) -> SigningKey:
        if self._key is None:
            raise NoSigningKey(self.key_problem or "no signing key: configurations cannot be signed")
        return self._key

    async def write(self, operation: Callable[[sa.Connection, datetime], tuple[T, list[str]]]) -> tuple[T, bool]:
        """Run ``operation`` in one write transaction, then publish the newest
        version of each gateway it names; whether all went out at once."""
        def commit() -> tuple[T, list[str]]:
            with write_transaction(self.engine) as conn:
                return operation(conn, datetime.now(UTC))
        result, gateway_ids = await asyncio.to_thread(commit)
        published = self.publisher is not None and await self.publisher.publish_latest(gateway_ids)
        if gateway_ids and not published:
            log.info("configuration of %s gateway(s) committed but not published now (%s); the next connect "
                     "or the catch-up publishes it", len(gateway_ids),
                     "broker not connected" if self.publisher else "MQTT services not run by this process")
        return result, published

    async def read(self, query: Callable[[sa.Connection], T]) -> T:
        def run() -> T:
            with self.engine.connect() as conn:
                return query(conn)
        return await asyncio.to_thread(run)


CONFIGS = web.AppKey("fleet_configs", ConfigService)


def record_once(engine: sa.Engine, *, recent_only: bool = False) -> config_outcomes.Recorded | None:
    """One pass of the outcome task; ``recent_only``: the newest RECENT_IDS
    versions (a primary-key range), which is where outcomes arrive."""
    with engine.connect() as conn:
        since = 0
        if recent_only:
            top = conn.execute(sa.select(sa.func.max(gateway_configs.c.id))).scalar()
            since = max(0, int(top or 0) - RECENT_IDS)
        if not config_outcomes.anything_to_record(conn, since):
            return None
    with write_transaction(engine) as conn:
        return config_outcomes.record_outcomes(conn, datetime.now(UTC), since)


async def _outcomes(engine: sa.Engine) -> None:
    # Every 2 s the recent versions; every FULL_PASS_S all of them (a gateway
    # that comes back after weeks still settles its old version's outcome).
    last_full = -FULL_PASS_S
    outage = Outage(log, "the database, for recording configuration outcomes")
    while True:
        await asyncio.sleep(OUTCOME_INTERVAL_S)
        full = time.monotonic() - last_full >= FULL_PASS_S
        try:
            await asyncio.to_thread(functools.partial(record_once, engine, recent_only=not full))
        except sa.exc.SQLAlchemyError as exc:  # the next round tries again
            outage.failed(exc)
            continue
        except Exception:  # noqa: BLE001 - a fault of ours: the next round tries again
            log.exception("recording configuration outcomes failed")
            continue
        outage.ok()
        if full:
            last_full = time.monotonic()


async def config_ctx(app: web.Application, *, run_service: bool, publish: bool = False) -> AsyncIterator[None]:
    """The service (the allowlist key, from the access service set up
    before), and when ``run_service`` its publisher and outcome task; with
    ``publish`` alone (a web process) a publisher of its own versions only."""
    access = app[ACCESS]
    publisher = (ConfigPublisher(app[SETTINGS], app[ENGINE], background=run_service)
                 if run_service or publish else None)
    app[CONFIGS] = ConfigService(app[ENGINE], access.key, access.key_problem, publisher,
                                 app[SETTINGS].config_gate_s)
    tasks: list[asyncio.Task[Any]] = []
    if publisher is not None:
        tasks.append(asyncio.create_task(publisher.run(), name="config-publisher"))
    if run_service:
        tasks.append(asyncio.create_task(_outcomes(app[ENGINE]), name="config-outcomes"))
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - report, but let the rest shut down
            log.exception("configuration task %s failed", task.get_name())
