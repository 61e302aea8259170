"""Fleet health: one word for where each gateway stands, from the columns its
last status filled (server/ingest/store.py), the same rule in Python
(``fleet_state``, one row) and in SQL (``state_column``, so that a page sorts,
filters and pages a city's gateways in the database), the listing behind the
fleet page, its alerts, and the Prometheus gauges (docs/fleet-health.md).

States, first match wins:

* revoked       revoked_at is set (its events are refused at ingest)
* never_seen    nothing has ever arrived from it: no status, no event
                (enrolled, not yet connected)
* offline       the last status was the last will or a goodbye, or nothing
                has come from it for ``fleet_offline_after_s`` (a gateway that
                only ever sent events, as the district simulation's do, is
                judged by that alone)
* backlog       outbox deeper than ``fleet_outbox_alert``, or its oldest unsent
                event waiting over 10 minutes: events are not getting through
* config_failed the newest configuration version was rolled back or refused
* degraded      a device not ok, a terminal that does not hold the
                gateway's allowlist (server/ingest/terminals.py: someone
                deregistered may still open its door), the clock off by over
                60 s, or the disk under 5 % or 200 MB free
* online        none of the above
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from rentgate.outage import Outage
from server.appkeys import ENGINE, METRIC_SOURCES, SETTINGS
from server.db.models import buildings, gateway_configs, gateways
from server.settings import ServerSettings

log = logging.getLogger(__name__)

# In the order of trouble: the page sorts by it, offline and backlog first
# (events are not reaching the server), revoked last (nothing to do).
STATES = ("offline", "backlog", "config_failed", "degraded", "never_seen", "online", "revoked")
TROUBLE_RANK = {state: rank for rank, state in enumerate(STATES)}
# What the alerts list: a person should act on these.
ALERT_STATES = ("offline", "backlog", "config_failed")
FAILED_CONFIG_STATES = ("rolled_back", "refused")

SKEW_LIMIT_S = 60.0
BACKLOG_AGE_S = 600.0
DISK_FREE_MIN_BYTES = 200 * 1024 * 1024
# Under 1/20 (5 %) of the disk free; integer division in SQL and here alike.
DISK_FREE_MIN_SHARE_DIVISOR = 20

METRICS_REFRESH_S = 10.0
PER_PAGE = 50
MAX_PAGE = 100_000
ALERTS_SHOWN = 20
SORTS = ("trouble", "last_heard", "name")


# ---------------------------------------------------------------- one row, in Python

def devices_not_ok(devices: Any) -> list[dict[str, Any]]:
    """The devices of a status that are not ok (devices_health as stored)."""
    if not isinstance(devices, list):
        return []
    return [d for d in devices if isinstance(d, dict) and d.get("state") not in (None, "ok")]


def disk_low(free: int | None, total: int | None) -> bool:
    if free is None:
        return False
    return free < DISK_FREE_MIN_BYTES or (total is not None and free < total // DISK_FREE_MIN_SHARE_DIVISOR)


def skew_too_large(skew_s: float | None) -> bool:
    return skew_s is not None and abs(skew_s) > SKEW_LIMIT_S


def config_failed(row: Mapping[str, Any]) -> bool:
    """The newest version was rolled back or refused: ``newest_config`` is the
    newest version the server holds for the gateway (the listing selects it);
    a failure of an older one is old news once a newer one is out."""
    if row.get("config_state") not in FAILED_CONFIG_STATES:
        return False
    newest, attempted = row.get("newest_config"), row.get("config_attempted")
    return newest is None or attempted is None or attempted >= newest


def fleet_state(row: Mapping[str, Any], now: datetime, settings: ServerSettings) -> str:
    """One of STATES for a gateways row (see the module's text)."""
    if row.get("revoked_at") is not None:
        return "revoked"
    if row.get("status_at") is None and not row.get("max_seq"):
        return "never_seen"
    last_seen = row.get("last_seen")
    if row.get("online") is False or last_seen is None or \
            last_seen < now - timedelta(seconds=settings.fleet_offline_after_s):
        return "offline"
    depth, age = row.get("outbox_depth"), row.get("oldest_unsent_age_s")
    if (depth is not None and depth > settings.fleet_outbox_alert) or (age is not None and age > BACKLOG_AGE_S):
        return "backlog"
    if config_failed(row):
        return "config_failed"
    if devices_not_ok(row.get("devices_health")) or (row.get("terminals_behind") or 0) > 0 or \
            skew_too_large(row.get("clock_skew_s")) or disk_low(row.get("disk_free_bytes"), row.get("disk_total_bytes")):
        return "degraded"
    return "online"


def trouble_rank(state: str) -> int:
    """Sort key: 0 for the most trouble (offline)."""
    return TROUBLE_RANK.get(state, len(STATES))


# ---------------------------------------------------------------- the same rule, in SQL

def _devices_not_ok_sql(dialect: str) -> sa.ColumnElement[bool]:
    if dialect == "postgresql":
        return sa.literal_column("""jsonb_path_exists(gateways.devices_health, '$[*] ? (@.state != "ok")')""",
                                 sa.Boolean)
    return sa.literal_column("EXISTS (SELECT 1 FROM json_each(gateways.devices_health) "
                             "WHERE json_extract(json_each.value, '$.state') != 'ok')", sa.Boolean)


def newest_config_column() -> sa.ScalarSelect[Any]:
    """The newest configuration version the server holds for the gateway (the
    unique index on gateway_id, version answers it)."""
    return (sa.select(sa.func.max(gateway_configs.c.version))
            .where(gateway_configs.c.gateway_id == gateways.c.id).scalar_subquery())


def state_column(dialect: str, now: datetime, settings: ServerSettings) -> sa.ColumnElement[str]:
    """``fleet_state`` as a CASE over the gateways table."""
    g = gateways.c
    newest = newest_config_column()
    cutoff = now - timedelta(seconds=settings.fleet_offline_after_s)
    return sa.case(
        (g.revoked_at.is_not(None), "revoked"),
        (sa.and_(g.status_at.is_(None), sa.func.coalesce(g.max_seq, 0) == 0), "never_seen"),
        (sa.or_(g.online.is_(False), g.last_seen.is_(None), g.last_seen < cutoff), "offline"),
        (sa.or_(g.outbox_depth > settings.fleet_outbox_alert, g.oldest_unsent_age_s > BACKLOG_AGE_S), "backlog"),
        (sa.and_(g.config_state.in_(FAILED_CONFIG_STATES),
                 sa.or_(newest.is_(None), g.config_attempted.is_(None), g.config_attempted >= newest)),
         "config_failed"),
        (sa.or_(_devices_not_ok_sql(dialect), g.terminals_behind > 0, sa.func.abs(g.clock_skew_s) > SKEW_LIMIT_S,
                g.disk_free_bytes < DISK_FREE_MIN_BYTES,
                g.disk_free_bytes < g.disk_total_bytes // DISK_FREE_MIN_SHARE_DIVISOR), "degraded"),
        else_="online",
    )


def rank_column(state: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
    return sa.case({s: r for s, r in TROUBLE_RANK.items()}, value=state, else_=len(STATES))


# ---------------------------------------------------------------- the listing

@dataclass(frozen=True)
class FleetQuery:
    state: str | None = None
    sort: str = "trouble"
    page: int = 1
    per_page: int = PER_PAGE


@dataclass
class FleetPage:
    rows: list[dict[str, Any]]
    total: int  # gateways matching the filter
    counts: dict[str, int]  # gateways in scope by state
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alerts_total: int = 0

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / PER_PAGE))


def _scoped(query: sa.Select[Any], scope: sa.Select[tuple[int]] | None) -> sa.Select[Any]:
    """``scope``: the caller's building ids (server.auth.scopes.scope_buildings);
    None is everything (an administrator). A gateway bound to no building is
    an administrator's alone."""
    return query if scope is None else query.where(gateways.c.building_id.in_(scope))


def list_fleet(conn: sa.Connection, scope: sa.Select[tuple[int]] | None, now: datetime, settings: ServerSettings,
               query: FleetQuery) -> FleetPage:
    """One page of the caller's gateways, their counts by state and the alerts."""
    g = gateways.c
    state = state_column(conn.dialect.name, now, settings).label("state")
    base = (sa.select(g.id, g.hostname, g.building_id, buildings.c.name.label("building_name"), g.online, g.max_seq,
                      g.status_at, g.first_seen, g.last_seen, g.version, g.outbox_depth, g.oldest_unsent_age_s,
                      g.clock_skew_s, g.devices_health, g.terminals_health, g.terminals_behind,
                      g.allowlist_version, g.disk_free_bytes, g.disk_total_bytes, g.mem_rss_bytes,
                      g.mem_available_bytes, g.config_version, g.config_attempted, g.config_state, g.config_error,
                      g.revoked_at, g.enrolled_at, newest_config_column().label("newest_config"), state)
            .select_from(gateways.outerjoin(buildings, buildings.c.id == g.building_id)))
    base = _scoped(base, scope)
    inner = base.subquery("fleet")
    f = inner.c
    # Grouped over the sub-select: a CASE with parameters cannot be repeated in GROUP BY.
    counts = dict.fromkeys(STATES, 0)
    for name, number in conn.execute(sa.select(f.state, sa.func.count()).group_by(f.state)).tuples():
        counts[str(name)] = int(number)
    listing = sa.select(inner)
    if query.state is not None:
        listing = listing.where(f.state == query.state)
    name = sa.func.coalesce(f.hostname, f.id)
    if query.sort == "name":
        order: list[Any] = [name, f.id]
    elif query.sort == "last_heard":
        order = [f.last_seen.desc().nulls_last(), f.id]
    else:
        order = [rank_column(f.state), f.last_seen.desc().nulls_last(), f.id]
    offset = (max(1, query.page) - 1) * query.per_page
    rows = [dict(r) for r in conn.execute(listing.order_by(*order).offset(offset).limit(query.per_page)).mappings()]
    # A terminal that does not hold the list may open for someone
    # deregistered: a person should act on it, as on an offline gateway.
    alerting = sa.or_(f.state.in_(ALERT_STATES), sa.and_(f.state == "degraded", f.terminals_behind > 0))
    alerts = [dict(r) for r in conn.execute(
        sa.select(inner).where(alerting)
        .order_by(f.last_seen.desc().nulls_last(), f.id).limit(ALERTS_SHOWN)).mappings()]
    alerts_total = len(alerts) if len(alerts) < ALERTS_SHOWN else int(
        conn.execute(sa.select(sa.func.count()).select_from(inner).where(alerting)).scalar_one())
    total = counts[query.state] if query.state is not None else sum(counts.values())
    return FleetPage(rows=rows, total=total, counts=counts, alerts=alerts, alerts_total=alerts_total)


# ---------------------------------------------------------------- Prometheus

@dataclass
class FleetGauges:
    """The fleet's gauges, counted by one grouped query every
    METRICS_REFRESH_S: a scrape only reads them (a city has hundreds of
    thousands of gateways; /metrics must not walk them)."""

    counts: dict[str, int] | None = None
    outbox_events: int = 0

    def refresh(self, engine: sa.Engine, now: datetime, settings: ServerSettings) -> None:
        self.counts, self.outbox_events = count_states(engine, now, settings)

    def render(self) -> str:
        if self.counts is None:
            return ""  # not counted yet: no gauge rather than a false zero
        name = "rentgate_fleet_gateways"
        lines = [f"# HELP {name} Gateways by fleet state (docs/fleet-health.md).", f"# TYPE {name} gauge"]
        lines += [f'{name}{{state="{state}"}} {self.counts.get(state, 0)}' for state in STATES]
        name = "rentgate_fleet_outbox_events"
        lines += [f"# HELP {name} Events waiting in the outboxes of gateways not revoked, as their last "
                  "statuses said.", f"# TYPE {name} gauge", f"{name} {self.outbox_events}"]
        return "\n".join(lines) + "\n"


def count_states(engine: sa.Engine, now: datetime, settings: ServerSettings) -> tuple[dict[str, int], int]:
    g = gateways.c
    with engine.connect() as conn:
        inner = sa.select(state_column(conn.dialect.name, now, settings).label("state"), g.outbox_depth).subquery()
        rows = conn.execute(sa.select(inner.c.state, sa.func.count(), sa.func.sum(inner.c.outbox_depth))
                            .group_by(inner.c.state)).tuples().all()
    counts = dict.fromkeys(STATES, 0)
    outbox = 0
    for name, number, depth in rows:
        counts[str(name)] = int(number)
        if name != "revoked":
            outbox += int(depth or 0)
    return counts, outbox


GAUGES = web.AppKey("fleet_gauges", FleetGauges)


async def _refresh_gauges(app: web.Application) -> None:
    gauges, engine, settings = app[GAUGES], app[ENGINE], app[SETTINGS]
    outage = Outage(log, "the database, for the fleet gauges")
    while True:
        try:
            await asyncio.to_thread(gauges.refresh, engine, datetime.now(UTC), settings)
        except sa.exc.SQLAlchemyError as exc:
            outage.failed(exc)
        else:
            outage.ok()
        await asyncio.sleep(METRICS_REFRESH_S)


async def _gauges_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_refresh_gauges(app), name="fleet-gauges")
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def setup(app: web.Application, *, run_service: bool) -> None:
    """The gauges on /metrics. Counted by the instance that runs the services
    (ingest) only: read replicas would count the same fleet again."""
    gauges = FleetGauges()
    app[GAUGES] = gauges
    app.setdefault(METRIC_SOURCES, []).append(gauges.render)
    if run_service:
        app.cleanup_ctx.append(_gauges_ctx)
