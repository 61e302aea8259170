"""Each gateway's newest configuration version out over MQTT, RETAINED with
QoS 1 on wire.config_topic(gw), so a gateway that connects later (or
reconnects) gets it from the broker. A client of its own (``<server client
id>-config``), like the allowlist publisher's, so that a wave of versions
never queues behind event acks.

A new version goes out right after the commit that made it
(``publish_latest``); every connect republishes every gateway's newest
version (nothing is kept here while the broker is away); a catch-up task
publishes versions made by another process (a second server, a command
line) within seconds. Revoked gateways get nothing.

Everything that publishes runs on the event loop and remembers the
version it handed to the broker per gateway: a stale read never replaces a
newer retained version with an older one.

With several processes (docs/scaling.md) a web process publishes only the
versions its own requests make (``background=False``); the one process that
runs the background services republishes on connect and catches up. Two
processes may then race on one gateway's retained message (one publishes a
version it read just before the other's newer one): the catch-up's next
round, within CATCH_UP_INTERVAL_S, puts the newest back."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa

from rentgate import wire
from rentgate.mqtt import LinkSettings, MqttLink
from rentgate.outage import Outage
from server.db.models import gateway_configs, gateways
from server.settings import ServerSettings

log = logging.getLogger(__name__)

CLIENT_ID_SUFFIX = "-config"
# How often to look for versions made without a publish from this process.
CATCH_UP_INTERVAL_S = 10.0
# The catch-up reads the versions with ids above what it saw last, minus
# this many: on PostgreSQL a transaction that took an id earlier may commit
# after one that took a later id.
CATCH_UP_LOOKBACK_IDS = 1000
CHUNK = 500
# A republish on connect that met the database down tries again this often.
REPUBLISH_RETRY_S = 1.0

Newest = tuple[str, int, str]  # gateway, version, signed message


def client_id(server_client_id: str) -> str:
    return server_client_id[: 64 - len(CLIENT_ID_SUFFIX)] + CLIENT_ID_SUFFIX


def _newest_query() -> sa.Select[tuple[str, int, str]]:
    c, g = gateway_configs.c, gateways.c
    inner = gateway_configs.alias("newer")
    newest = sa.select(sa.func.max(inner.c.version)).where(inner.c.gateway_id == c.gateway_id).scalar_subquery()
    return (sa.select(c.gateway_id, c.version, c.payload)
            .select_from(gateway_configs.join(gateways, g.id == c.gateway_id))
            .where(c.version == newest, g.revoked_at.is_(None)))


def newest_of(conn: sa.Connection, gateway_ids: Sequence[str]) -> list[Newest]:
    """The newest version of each of these gateways that is not revoked."""
    found: list[Newest] = []
    ids = list(dict.fromkeys(gateway_ids))
    for start in range(0, len(ids), CHUNK):
        rows = conn.execute(_newest_query().where(gateway_configs.c.gateway_id.in_(ids[start:start + CHUNK])))
        found += [(r[0], int(r[1]), str(r[2])) for r in rows]
    return found


def newest_after(conn: sa.Connection, after_gateway: str, limit: int) -> list[Newest]:
    """Every gateway's newest version, a page at a time by gateway id."""
    c = gateway_configs.c
    rows = conn.execute(_newest_query().where(c.gateway_id > after_gateway).order_by(c.gateway_id).limit(limit))
    return [(r[0], int(r[1]), str(r[2])) for r in rows]


def changed_since(conn: sa.Connection, after_id: int) -> tuple[list[str], int]:
    """Gateways with versions whose row id is above ``after_id``, and the
    highest id seen."""
    c = gateway_configs.c
    rows = conn.execute(sa.select(c.gateway_id, c.id).where(c.id > after_id)).all()
    top = max((int(r[1]) for r in rows), default=after_id)
    return sorted({r[0] for r in rows}), top


class ConfigPublisher:
    def __init__(self, settings: ServerSettings, engine: sa.Engine, *, background: bool = True) -> None:
        self.engine = engine
        self.background = background
        self.counters: Counter[str] = Counter()
        self.outage = Outage(log, "the database, for publishing configurations")
        self.link = MqttLink(
            LinkSettings(url=settings.mqtt_url, fallback_urls=settings.mqtt_fallbacks(),
                         client_id=client_id(settings.mqtt_client_id)),
            on_connect=self._on_connect,
        )
        # The version handed to the broker per gateway, on this connection.
        self.published: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reconnected = asyncio.Event()
        self._watermark = 0

    async def run(self) -> None:
        """Run until cancelled."""
        self._loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.link.run(), name="config-mqtt-link")
            if self.background:
                tg.create_task(self._republish_on_connect(), name="config-republish")
                tg.create_task(self._catch_up(), name="config-catch-up")

    def render_metrics(self) -> str:
        """Prometheus counters for /metrics."""
        name = "rentgate_config_messages_total"
        return (f"# HELP {name} Configuration versions handed to the broker (published) or not (unsent: "
                f"republished on the next connect).\n# TYPE {name} counter\n"
                f'{name}{{result="published"}} {self.counters["published"]}\n'
                f'{name}{{result="unsent"}} {self.counters["unsent"]}\n')

    async def publish_latest(self, gateway_ids: Sequence[str]) -> bool:
        """Publish these gateways' newest versions (after the commit that
        made them); True when every one was handed to the broker."""
        if not gateway_ids:
            return True
        if not self.link.connected.is_set():
            return False
        rows = await asyncio.to_thread(self._read, gateway_ids)
        return self._publish(rows)

    def _read(self, gateway_ids: Sequence[str]) -> list[Newest]:
        with self.engine.connect() as conn:
            return newest_of(conn, gateway_ids)

    def _publish(self, rows: list[Newest]) -> bool:
        ok = True
        for gw, version, message in rows:
            if self.published.get(gw, 0) >= version:
                continue  # this or a newer one is already out
            if self.link.publish(wire.config_topic(gw), message.encode(), qos=1, retain=True):
                self.published[gw] = version
                self.counters["published"] += 1
            else:
                self.counters["unsent"] += 1
                ok = False
        return ok

    # ------------------------------------------------------------------ connects

    def _on_connect(self) -> None:  # network thread
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._reconnected.set)

    async def _republish_on_connect(self) -> None:
        while True:
            await self._reconnected.wait()
            self._reconnected.clear()
            self.published.clear()
            try:
                # What the republishing reads covers every version made so far.
                self._watermark = await asyncio.to_thread(self._max_id)
                count = await self._republish_all()
            except sa.exc.SQLAlchemyError as exc:
                # The database is away: try again until it is back (quietly).
                self.outage.failed(exc)
                self._reconnected.set()
                await asyncio.sleep(REPUBLISH_RETRY_S)
                continue
            except Exception:  # noqa: BLE001 - a fault of ours: the catch-up and the next connect retry
                log.exception("republishing the gateways' configurations failed")
                continue
            self.outage.ok()
            log.info("configurations republished on connect: %s gateways", count)

    async def _republish_all(self) -> int:
        after, count = "", 0
        while self.link.connected.is_set():
            rows = await asyncio.to_thread(self._page, after)
            if not rows:
                break
            self._publish(rows)
            count += len(rows)
            after = rows[-1][0]
        return count

    def _page(self, after: str) -> list[Newest]:
        with self.engine.connect() as conn:
            return newest_after(conn, after, CHUNK)

    # ------------------------------------------------------------------ catch-up

    async def _catch_up(self) -> None:
        while True:
            await asyncio.sleep(CATCH_UP_INTERVAL_S)
            await self.catch_up_once()

    async def catch_up_once(self) -> None:
        if not self.link.connected.is_set():
            return
        try:
            changed, top = await asyncio.to_thread(self._changed, max(0, self._watermark - CATCH_UP_LOOKBACK_IDS))
            rows = await asyncio.to_thread(self._read, changed) if changed else []
        except sa.exc.SQLAlchemyError as exc:  # the next round retries
            self.outage.failed(exc)
            return
        except Exception:  # noqa: BLE001 - a fault of ours: the next round retries
            log.exception("configuration catch-up query failed")
            return
        self.outage.ok()
        behind = [r for r in rows if self.published.get(r[0], 0) < r[1]]
        if behind:
            log.info("%s configuration versions made elsewhere; publishing", len(behind))
        if self._publish(behind):
            self._watermark = max(self._watermark, top)

    def _max_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(gateway_configs.c.id))).scalar() or 0)

    def _changed(self, after_id: int) -> tuple[list[str], int]:
        with self.engine.connect() as conn:
            return changed_since(conn, after_id)
