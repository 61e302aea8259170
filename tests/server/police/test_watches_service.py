"""The watch service and the matcher on SQLite and PostgreSQL: what a watch
stores (never the number), the limits, withdrawing (another client's watch
is the same 404 as none), expiry erasing the digest and masked number, and
every read of a watched card raising exactly one alert, however often it
is matched."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from server.db.models import police_alerts, police_watches
from server.police import watches
from server.police.watch_matcher import (
    CLOCK_SKEW,
    WatchMatcher,
    find_sightings,
    load_index,
    raise_alerts,
)
from server.web.errors import Conflict, NotFound
from tests.server.police.watch_helpers import (
    VAULT,
    add_card,
    building_with_gateway,
    id_number,
    person_with_card,
    police_client,
    set_webhook,
    store_reads,
)

PURPOSE = {"code": "fugitive_pursuit", "legal_basis": "《刑事诉讼法》第155条", "case_ref": "GZ-2026-0007"}


def spec(user_id: int, number: str, *, days: float = 30) -> watches.WatchSpec:
    from server.registry.idnumber import mask_id_number

    return watches.WatchSpec(user_id, VAULT.digest(number), mask_id_number(number), dict(PURPOSE),
                             datetime.now(UTC) + timedelta(days=days))


def create(engine: sa.Engine, user_id: int, number: str, **options: Any) -> dict[str, Any]:
    with engine.begin() as conn:
        return watches.create_watch(conn, spec(user_id, number), datetime.now(UTC), **options)


def watch_row(engine: sa.Engine, public_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(police_watches).where(police_watches.c.public_id == public_id)).one()


def alerts_of(engine: sa.Engine, public_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(
            sa.select(police_alerts).join(police_watches, police_watches.c.id == police_alerts.c.watch_id)
            .where(police_watches.c.public_id == public_id).order_by(police_alerts.c.id)))


def match_all(engine: sa.Engine, *, stamps: list[datetime] | None = None) -> int:
    """One fast-path match (``stamps``) or one full sweep, as the matcher runs them."""
    with engine.connect() as conn:
        index = load_index(conn)
        if stamps is not None:
            found = find_sightings(conn, index, stored_at=stamps)
        else:
            found = find_sightings(conn, index, stored_since=index.oldest) if index.oldest else []
    with engine.begin() as conn:
        return raise_alerts(conn, found, datetime.now(UTC))


# --------------------------------------------------------------------------- the service


def test_a_watch_keeps_the_digest_and_masked_number_never_the_number(engine: sa.Engine) -> None:
    client = police_client(engine)
    number = id_number(1)
    watch = create(engine, client.user_id, number)
    assert watch["state"] == "active" and watch["id_masked"] == number[:4] + "*" * 10 + number[-4:]
    row = watch_row(engine, watch["id"])
    assert row.id_digest == VAULT.digest(number)
    assert number not in repr(tuple(row)), "the identity number itself is stored"
    listed = watches_of(engine, client.user_id)
    assert [w["id"] for w in listed] == [watch["id"]]
    assert listed[0]["purpose"] == {"code": "fugitive_pursuit", "case_ref": "GZ-2026-0007",
                                    "legal_basis": PURPOSE["legal_basis"]}
    assert (listed[0]["alerts"], listed[0]["alerts_pending"], listed[0]["alerts_delivered"]) == (0, 0, 0)


def watches_of(engine: sa.Engine, user_id: int, **options: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return watches.list_watches(conn, user_id, **options)


def test_a_client_without_a_webhook_cannot_watch(engine: sa.Engine) -> None:
    client = police_client(engine, webhook_url=None)
    with pytest.raises(watches.NoWebhook) as refused:
        create(engine, client.user_id, id_number(1))
    assert "administrator" in refused.value.problem


def test_the_limits_of_active_watches(engine: sa.Engine) -> None:
    client = police_client(engine)
    create(engine, client.user_id, id_number(1), max_active=2)
    with pytest.raises(Conflict, match="already watches this number"):
        create(engine, client.user_id, id_number(1), max_active=2)
    create(engine, client.user_id, id_number(2), max_active=2)
    with pytest.raises(watches.TooManyWatches, match="most allowed is 2"):
        create(engine, client.user_id, id_number(3), max_active=2)
    # Another client has its own count.
    create(engine, police_client(engine).user_id, id_number(3), max_active=2)


def test_withdraw_erases_and_another_clients_watch_is_no_such_watch(engine: sa.Engine) -> None:
    owner, other = police_client(engine), police_client(engine)
    watch = create(engine, owner.user_id, id_number(1))
    now = datetime.now(UTC)
    with engine.begin() as conn, pytest.raises(NotFound) as theirs:
        watches.withdraw_watch(conn, other.user_id, watch["id"], now)
    with engine.begin() as conn, pytest.raises(NotFound) as none:
        watches.withdraw_watch(conn, other.user_id, watches.new_public_id(), now)
    assert str(theirs.value) == str(none.value) == "no such watch"
    assert watch_row(engine, watch["id"]).state == "active"

    with engine.begin() as conn:
        withdrawn = watches.withdraw_watch(conn, owner.user_id, watch["id"], now)
    assert withdrawn["state"] == "withdrawn" and withdrawn["id_masked"] is None
    row = watch_row(engine, watch["id"])
    assert (row.state, row.id_digest, row.id_masked, row.ended_at is not None) == ("withdrawn", None, None, True)
    with engine.begin() as conn:  # again: answered as it is
        assert watches.withdraw_watch(conn, owner.user_id, watch["id"], now)["state"] == "withdrawn"


def test_expiry_erases_the_person_and_ends_matching(engine: sa.Engine) -> None:
    client = police_client(engine)
    place = building_with_gateway(engine)
    number = id_number(1)
    person_with_card(engine, place, number, "00000000C1")
    watch = create(engine, client.user_id, number)
    store_reads(engine, place, ["00000000C1"])
    assert match_all(engine) == 1
    alert_ids = [a.id for a in alerts_of(engine, watch["id"])]
    with engine.begin() as conn:  # the first alert was delivered, the second not yet
        conn.execute(police_alerts.update().where(police_alerts.c.id == alert_ids[0])
                     .values(delivered_at=datetime.now(UTC)))
    store_reads(engine, place, ["00000000C1"])
    assert match_all(engine) == 1

    with engine.begin() as conn:
        conn.execute(police_watches.update().where(police_watches.c.public_id == watch["id"])
                     .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    # Past its end and not yet expired by the task: it matches nothing.
    store_reads(engine, place, ["00000000C1"])
    assert match_all(engine) == 0
    with engine.begin() as conn:
        result = watches.expire_watches(conn, datetime.now(UTC))
        assert watches.next_expiry(conn) is None
    assert (result.expired, result.revoked, result.alerts_removed) == (1, 0, 1)
    row = watch_row(engine, watch["id"])
    assert (row.state, row.id_digest, row.id_masked, row.alerts) == ("expired", None, None, 2)
    # The delivered alert is gone; the undelivered one waits for delivery.
    left = alerts_of(engine, watch["id"])
    assert len(left) == 1 and left[0].id != alert_ids[0] and left[0].delivered_at is None
    listed = watches_of(engine, client.user_id, state="expired")[0]
    assert (listed["id_masked"], listed["alerts"], listed["alerts_pending"], listed["alerts_delivered"]) == \
        (None, 2, 1, 1)
    with engine.connect() as conn:
        assert load_index(conn).empty


def test_a_revoked_client_s_watches_end_and_its_undelivered_alerts_go(engine: sa.Engine) -> None:
    client = police_client(engine)
    place = building_with_gateway(engine)
    person_with_card(engine, place, id_number(1), "00000000C2")
    watch = create(engine, client.user_id, id_number(1))
    store_reads(engine, place, ["00000000C2"])
    assert match_all(engine) == 1
    from server.db.models import police_principals

    with engine.begin() as conn:
        conn.execute(police_principals.update().where(police_principals.c.user_id == client.user_id)
                     .values(revoked_at=datetime.now(UTC)))
        result = watches.expire_watches(conn, datetime.now(UTC))
    assert (result.expired, result.revoked, result.alerts_removed) == (0, 1, 1)
    row = watch_row(engine, watch["id"])
    assert (row.state, row.id_digest, row.id_masked) == ("withdrawn", None, None)


# --------------------------------------------------------------------------- the matcher


def test_each_read_of_a_watched_card_raises_exactly_one_alert(engine: sa.Engine) -> None:
    client = police_client(engine)
    place, elsewhere = building_with_gateway(engine), building_with_gateway(engine)
    number = id_number(1)
    person_id = person_with_card(engine, place, number, "00000000D1")
    with engine.begin() as conn:  # a second card, and an old one now handed to someone else
        add_card(conn, person_id, place, "00000000D2")
        add_card(conn, person_id, place, "00000000D3", revoked=True)
    person_with_card(engine, place, id_number(2), "00000000D3")
    watch = create(engine, client.user_id, number)

    # Before the watch was set (beyond the clock tolerance): not the watch's.
    store_reads(engine, place, ["00000000D1"], at=datetime.now(UTC) - CLOCK_SKEW - timedelta(minutes=1))
    first = store_reads(engine, place, ["00000000D1", "00000000D2", "0000000099", "00000000D3"])
    store_reads(engine, elsewhere, ["00000000D1"])  # the same value at another building is another card
    assert first.stored_at is not None
    assert match_all(engine, stamps=[first.stored_at]) == 2
    assert match_all(engine, stamps=[first.stored_at]) == 0  # matched again: nothing new
    assert match_all(engine) == 0  # the sweep finds the same two
    second = store_reads(engine, place, ["00000000D2"], door="back")
    assert match_all(engine) == 1  # a sweep alone finds it too
    assert second.stored_at is not None
    assert match_all(engine, stamps=[second.stored_at]) == 0

    alerts = alerts_of(engine, watch["id"])
    assert len(alerts) == 3 and len({a.event_id for a in alerts}) == 3
    assert [a.door for a in alerts] == ["front", "front", "back"]
    assert {a.building_id for a in alerts} == {place.building_id}
    assert watch_row(engine, watch["id"]).alerts == 3


def test_a_withdrawn_watch_raises_nothing(engine: sa.Engine) -> None:
    client = police_client(engine)
    place = building_with_gateway(engine)
    person_with_card(engine, place, id_number(1), "00000000E1")
    watch = create(engine, client.user_id, id_number(1))
    with engine.connect() as conn:
        index = load_index(conn)
    assert not index.empty and index.watches == 1
    with engine.begin() as conn:
        watches.withdraw_watch(conn, client.user_id, watch["id"], datetime.now(UTC))
    result = store_reads(engine, place, ["00000000E1"])
    with engine.connect() as conn:  # an index from before the withdrawal still finds the read...
        found = find_sightings(conn, index, stored_at=[result.stored_at] if result.stored_at else [])
    assert len(found) == 1
    with engine.begin() as conn:  # ...but no alert is raised for an ended watch
        assert raise_alerts(conn, found, datetime.now(UTC)) == 0
    assert alerts_of(engine, watch["id"]) == []


async def test_the_matcher_listens_to_ingest_and_wakes_the_deliverer(engine: sa.Engine) -> None:
    client = police_client(engine)
    place = building_with_gateway(engine)
    person_with_card(engine, place, id_number(1), "00000000F1")
    woken = asyncio.Event()
    matcher = WatchMatcher(engine, on_alerts=woken.set, sweep_interval_s=3600)
    matcher.start()
    try:
        # A read while there is no watch: the listener does nothing.
        long_ago = datetime.now(UTC) - CLOCK_SKEW - timedelta(minutes=1)
        nothing = await asyncio.to_thread(functools.partial(store_reads, engine, place, ["00000000F1"], at=long_ago))
        matcher.on_commit(nothing)
        assert matcher._stamps == []
        watch = await asyncio.to_thread(create, engine, client.user_id, id_number(1))
        await matcher.refresh()
        assert not matcher.index.empty
        result = await asyncio.to_thread(store_reads, engine, place, ["00000000F1"])
        matcher.on_commit(result)
        await asyncio.wait_for(woken.wait(), 10)
        assert matcher.stats.alerts_raised == 1
        assert len(await asyncio.to_thread(alerts_of, engine, watch["id"])) == 1
    finally:
        await matcher.stop()


async def test_the_matcher_catches_up_at_start(engine: sa.Engine) -> None:
    """Reads stored while no matcher ran (a crash after ingest's commit) are
    found by the first sweep."""
    client = police_client(engine)
    place = building_with_gateway(engine)
    person_with_card(engine, place, id_number(1), "00000000F2")
    watch = create(engine, client.user_id, id_number(1))
    store_reads(engine, place, ["00000000F2", "00000000F2"])
    woken = asyncio.Event()
    matcher = WatchMatcher(engine, on_alerts=woken.set, sweep_interval_s=3600)
    matcher.start()
    try:
        await asyncio.wait_for(woken.wait(), 10)
    finally:
        await matcher.stop()
    assert len(alerts_of(engine, watch["id"])) == 2


def test_set_webhook_helper_changes_the_url(engine: sa.Engine) -> None:
    client = police_client(engine)
    set_webhook(engine, client.user_id, None)
    with pytest.raises(watches.NoWebhook):
        create(engine, client.user_id, id_number(1))


def test_reads_outside_the_client_s_jurisdiction_raise_no_alert(engine: sa.Engine) -> None:
    from server.db.models import areas, buildings

    now = datetime.now(UTC)
    parent = None
    with engine.begin() as conn:
        for level, code in (("district", "440106"), ("street", "440106001"), ("community", "440106001001"),
                            ("grid", "440106001001001")):
            parent = conn.execute(areas.insert().values(level=level, code=code, name=code, parent_id=parent,
                                                        created_at=now).returning(areas.c.id)).scalar_one()
    inside, outside = building_with_gateway(engine), building_with_gateway(engine)
    with engine.begin() as conn:
        conn.execute(buildings.update().where(buildings.c.id == inside.building_id).values(grid_id=parent))
    person_id = person_with_card(engine, inside, id_number(1), "00000000J1")
    with engine.begin() as conn:
        add_card(conn, person_id, outside, "00000000J2")
    district, unbounded = police_client(engine, jurisdiction="440106"), police_client(engine)
    mine, everywhere = create(engine, district.user_id, id_number(1)), create(engine, unbounded.user_id, id_number(1))
    store_reads(engine, inside, ["00000000J1"])
    store_reads(engine, outside, ["00000000J2"])
    assert match_all(engine) == 3
    assert [a.building_id for a in alerts_of(engine, mine["id"])] == [inside.building_id]
    assert sorted(a.building_id for a in alerts_of(engine, everywhere["id"])) == [inside.building_id,
                                                                                  outside.building_id]
