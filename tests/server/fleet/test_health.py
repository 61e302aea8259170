"""Fleet states (server/fleet/health.py): each rule on its own, the SQL CASE
agreeing with the Python rule on SQLite and PostgreSQL row by row, the
listing's sorting, filter, pages and scope, and the Prometheus gauges."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from server.db.models import buildings, gateway_configs, gateways
from server.fleet import health
from server.fleet.health import FleetGauges, FleetQuery, count_states, fleet_state, list_fleet, trouble_rank
from server.settings import ServerSettings

NOW = datetime(2026, 12, 5, 22, 0, tzinfo=UTC)
SETTINGS = ServerSettings(fleet_offline_after_s=90, fleet_outbox_alert=1000)
GB = 1024 ** 3


def healthy(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "revoked_at": None, "status_at": NOW - timedelta(seconds=20), "online": True,
        "last_seen": NOW - timedelta(seconds=20), "outbox_depth": 0, "oldest_unsent_age_s": None,
        "config_state": "applied", "config_version": 3, "config_attempted": 3, "newest_config": 3,
        "config_error": None, "devices_health": [{"id": "reader-1", "type": "reader", "state": "ok"}],
        "clock_skew_s": 0.4, "disk_free_bytes": 10 * GB, "disk_total_bytes": 32 * GB,
    }
    row.update(changes)
    return row


CASES: list[tuple[str, dict[str, Any], str]] = [
    ("healthy", healthy(), "online"),
    ("nothing reported but alive", healthy(devices_health=None, clock_skew_s=None, disk_free_bytes=None,
                                           disk_total_bytes=None, config_state=None, outbox_depth=None), "online"),
    ("revoked wins over everything", healthy(revoked_at=NOW, online=False), "revoked"),
    ("enrolled, never spoke", healthy(status_at=None, online=None), "never_seen"),
    ("events but never a status, lately", healthy(status_at=None, online=None, max_seq=40), "online"),
    ("events but never a status, long ago", healthy(status_at=None, online=None, max_seq=40,
                                                    last_seen=NOW - timedelta(days=400)), "offline"),
    ("last will", healthy(online=False), "offline"),
    ("silent for longer than fleet_offline_after_s", healthy(last_seen=NOW - timedelta(seconds=91)), "offline"),
    ("silent for just under", healthy(last_seen=NOW - timedelta(seconds=89)), "online"),
    ("offline beats backlog", healthy(online=False, outbox_depth=5000), "offline"),
    ("outbox past the alert", healthy(outbox_depth=1001), "backlog"),
    ("outbox at the alert", healthy(outbox_depth=1000), "online"),
    ("oldest unsent over 10 minutes", healthy(outbox_depth=3, oldest_unsent_age_s=601), "backlog"),
    ("rolled back, newest", healthy(config_state="rolled_back", config_attempted=4, newest_config=4,
                                    config_error="reader-1 did not answer"), "config_failed"),
    ("refused, newest", healthy(config_state="refused", config_attempted=4, newest_config=4), "config_failed"),
    ("rolled back, a newer one is out", healthy(config_state="rolled_back", config_attempted=4, newest_config=5),
     "online"),
    ("rolled back, no server version known", healthy(config_state="rolled_back", config_attempted=4,
                                                     newest_config=None), "config_failed"),
    ("backlog beats config_failed", healthy(outbox_depth=2000, config_state="refused"), "backlog"),
    ("config_failed beats degraded", healthy(config_state="refused", clock_skew_s=300), "config_failed"),
    ("a camera without frames", healthy(devices_health=[{"id": "r", "type": "reader", "state": "ok"},
                                                        {"id": "cam", "type": "camera", "state": "no_frames"}]),
     "degraded"),
    ("a device starting", healthy(devices_health=[{"id": "r", "type": "reader", "state": "starting"}]), "degraded"),
    ("no devices at all", healthy(devices_health=[]), "online"),
    ("clock 61 s behind", healthy(clock_skew_s=61), "degraded"),
    ("clock 61 s ahead", healthy(clock_skew_s=-61), "degraded"),
    ("clock 59 s off", healthy(clock_skew_s=-59), "online"),
    ("disk under 200 MB", healthy(disk_free_bytes=199 * 1024 * 1024, disk_total_bytes=None), "degraded"),
    ("disk under 5 %", healthy(disk_free_bytes=4 * GB, disk_total_bytes=100 * GB), "degraded"),
    ("disk at 5 %", healthy(disk_free_bytes=5 * GB, disk_total_bytes=100 * GB), "online"),
    # Door terminals that decide from their own list (server/ingest/terminals.py).
    ("every terminal holds the list", healthy(terminals_behind=0), "online"),
    ("a terminal behind", healthy(terminals_behind=1), "degraded"),
    ("config_failed beats a terminal behind", healthy(terminals_behind=2, config_state="refused"), "config_failed"),
]


@pytest.mark.parametrize(("row", "expected"), [(row, state) for _, row, state in CASES],
                         ids=[name for name, _, _ in CASES])
def test_fleet_state_rules(row: dict[str, Any], expected: str) -> None:
    assert fleet_state(row, NOW, SETTINGS) == expected


def test_trouble_rank_puts_offline_and_backlog_first_and_revoked_last() -> None:
    ranked = sorted(health.STATES, key=trouble_rank)
    assert ranked[:2] == ["offline", "backlog"] and ranked[-1] == "revoked"


def _insert(conn: sa.Connection, gw: str, row: dict[str, Any], building_id: int | None = None,
            hostname: str | None = None) -> None:
    values = {"max_seq": 0, **{k: v for k, v in row.items() if k != "newest_config"}}
    conn.execute(gateways.insert().values(id=gw, first_seen=NOW - timedelta(days=1),
                                          last_seen=values.pop("last_seen") or NOW - timedelta(days=1),
                                          building_id=building_id, hostname=hostname, **values))
    newest = row.get("newest_config")
    for version in range(1, (newest or 0) + 1):
        conn.execute(gateway_configs.insert().values(
            gateway_id=gw, version=version, settings={}, gate_s=30.0, payload="{}", key_id="k", signature="s",
            created_at=NOW))


def test_the_sql_case_agrees_with_the_python_rule(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for i, (_, row, _) in enumerate(CASES):
            _insert(conn, f"gw-{i:02d}", row)
    with engine.connect() as conn:
        state = health.state_column(conn.dialect.name, NOW, SETTINGS)
        found = dict(conn.execute(sa.select(gateways.c.id, state)).tuples().all())
    assert found == {f"gw-{i:02d}": expected for i, (_, _, expected) in enumerate(CASES)}
    counts, outbox = count_states(engine, NOW, SETTINGS)
    expected_counts = dict.fromkeys(health.STATES, 0)
    for _, _, state_name in CASES:
        expected_counts[state_name] += 1
    assert counts == expected_counts
    assert outbox == sum(r["outbox_depth"] or 0 for _, r, s in CASES if s != "revoked")


def test_gauges_render_every_state_once_counted(engine: sa.Engine) -> None:
    gauges = FleetGauges()
    assert gauges.render() == ""  # not counted yet: absent, not a false zero
    with engine.begin() as conn:
        _insert(conn, "gw-a", healthy(outbox_depth=7))
        _insert(conn, "gw-b", healthy(online=False, outbox_depth=5))
        _insert(conn, "gw-c", healthy(revoked_at=NOW, outbox_depth=100))
    gauges.refresh(engine, NOW, SETTINGS)
    text = gauges.render()
    values = dict(re.findall(r'^rentgate_fleet_gateways\{state="(\w+)"\} (\d+)$', text, re.M))
    assert values == {s: {"online": "1", "offline": "1", "revoked": "1"}.get(s, "0") for s in health.STATES}
    assert re.search(r"^rentgate_fleet_outbox_events 12$", text, re.M)
    assert "# TYPE rentgate_fleet_gateways gauge" in text


def _world(conn: sa.Connection) -> tuple[int, int]:
    mine = conn.execute(buildings.insert().values(name="幸福楼", code="B-MINE", is_rental=True, created_at=NOW)
                        .returning(buildings.c.id)).scalar_one()
    theirs = conn.execute(buildings.insert().values(name="别人楼", code="B-THEIRS", is_rental=True, created_at=NOW)
                          .returning(buildings.c.id)).scalar_one()
    return int(mine), int(theirs)


def test_listing_sorts_filters_pages_and_keeps_to_the_scope(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        mine, theirs = _world(conn)
        _insert(conn, "gw-ok", healthy(last_seen=NOW - timedelta(seconds=5)), mine, hostname="zeta")
        _insert(conn, "gw-off-old", healthy(online=False, last_seen=NOW - timedelta(days=3)), mine)
        _insert(conn, "gw-off-new", healthy(online=False, last_seen=NOW - timedelta(minutes=5)), mine,
                hostname="alpha")
        _insert(conn, "gw-back", healthy(outbox_depth=5000), mine)
        _insert(conn, "gw-revoked", healthy(revoked_at=NOW), mine)
        _insert(conn, "gw-degraded", healthy(clock_skew_s=200), mine)
        _insert(conn, "gw-other", healthy(online=False), theirs)
        _insert(conn, "gw-nobody", healthy())
    scope = sa.select(buildings.c.id).where(buildings.c.id == mine)
    with engine.connect() as conn:
        page = list_fleet(conn, scope, NOW, SETTINGS, FleetQuery())
        assert [r["id"] for r in page.rows] == ["gw-off-new", "gw-off-old", "gw-back", "gw-degraded", "gw-ok",
                                                "gw-revoked"]
        assert page.rows[0]["building_name"] == "幸福楼"
        assert [r["id"] for r in page.alerts] == ["gw-back", "gw-off-new", "gw-off-old"]
        assert page.counts["offline"] == 2 and page.total == 6
        by_name = list_fleet(conn, scope, NOW, SETTINGS, FleetQuery(sort="name"))
        assert [r["id"] for r in by_name.rows][:2] == ["gw-off-new", "gw-back"]  # "alpha", then ids
        assert by_name.rows[-1]["id"] == "gw-ok"  # "zeta"
        heard = list_fleet(conn, scope, NOW, SETTINGS, FleetQuery(sort="last_heard"))
        assert heard.rows[0]["id"] == "gw-ok" and heard.rows[-1]["id"] == "gw-off-old"
        offline = list_fleet(conn, scope, NOW, SETTINGS, FleetQuery(state="offline"))
        assert {r["id"] for r in offline.rows} == {"gw-off-new", "gw-off-old"} and offline.total == 2
        second = list_fleet(conn, scope, NOW, SETTINGS, FleetQuery(page=2, per_page=4))
        assert [r["id"] for r in second.rows] == ["gw-ok", "gw-revoked"]
        everything = list_fleet(conn, None, NOW, SETTINGS, FleetQuery())
        assert {r["id"] for r in everything.rows} >= {"gw-other", "gw-nobody"} and everything.total == 8
        nothing = list_fleet(conn, sa.select(buildings.c.id).where(sa.false()), NOW, SETTINGS, FleetQuery())
        assert nothing.rows == [] and nothing.total == 0 and nothing.alerts == []
