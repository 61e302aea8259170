"""Configuration versions as the server keeps them: validated like the
gateway validates, numbered, signed with the allowlist key (the stored
message verifies with the public key), never deleted; and what became of
each, from the gateways' statuses. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rentgate import signing, wire
from server.access.keys import SigningKey
from server.db.models import gateway_configs
from server.fleet import configs
from server.fleet.config_outcomes import record_outcomes
from tests.server.fleet.config_helpers import (
    GOOD,
    World,
    add_gateway,
    config_settings,
    report_status,
    seed,
    signing_key,
)


@pytest.fixture
def world(engine: sa.Engine) -> World:
    return seed(engine)


@pytest.fixture
def key(database_url: str, tmp_path: Path) -> SigningKey:
    return signing_key(config_settings(database_url, tmp_path))


def make(engine: sa.Engine, key: SigningKey, gw: str = "gw-a1", settings: dict[str, Any] | None = None,
         **kw: object) -> int:
    with engine.begin() as conn:
        return configs.create_version(conn, datetime.now(UTC), gateway_id=gw, settings=settings or GOOD, key=key,
                                      **kw)  # type: ignore[arg-type]


def outcomes(engine: sa.Engine, gw: str) -> dict[int, tuple[str | None, str | None]]:
    c = gateway_configs.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(c.version, c.outcome, c.outcome_detail).where(c.gateway_id == gw))
        return {r[0]: (r[1], r[2]) for r in rows}


def test_versions_count_up_and_the_stored_message_verifies_with_the_public_key(
        engine: sa.Engine, world: World, key: SigningKey) -> None:
    assert make(engine, key, actor=world.admin.id, comment="first") == 1
    assert make(engine, key, settings={"heartbeat_s": 20}, gate_s=45.0) == 2
    assert make(engine, key, gw="gw-b1") == 1  # numbered per gateway
    with engine.connect() as conn:
        message = configs.published_message(conn, "gw-a1")
        assert configs.published_message(conn, "gw-a2") is None
    assert message is not None
    signed = wire.decode_signed_config(message)
    assert signed.key_id == key.key_id
    public = {key.key_id: signing.load_public_key(key.public_b64)}
    assert signing.verify(signed.payload.encode(), signed.signature, public, signed.key_id)
    config = wire.decode_remote_config(signed.payload)
    assert (config.gw, config.version, config.gate_s, config.settings) == ("gw-a1", 2, 45.0, {"heartbeat_s": 20})
    # A tampered payload does not verify.
    assert not signing.verify(signed.payload.replace("20", "99").encode(), signed.signature, public, signed.key_id)
    # The gate carries over when not given.
    assert make(engine, key) == 3
    with engine.connect() as conn:
        third = wire.decode_remote_config(wire.decode_signed_config(configs.published_message(conn, "gw-a1")
                                                                    or b"").payload)
    assert third.gate_s == 45.0


def test_settings_a_gateway_would_refuse_are_refused_with_each_key_path(
        engine: sa.Engine, world: World, key: SigningKey) -> None:
    bad = {"mqtt_url": "mqtt://elsewhere", "heartbeat_s": -1, "access": {"public_keys": {"k": "x"}}}
    with pytest.raises(configs.ConfigProblems) as caught:
        make(engine, key, settings=bad)
    paths = {p.path for p in caught.value.problems}
    assert {"mqtt_url", "access.public_keys"} <= paths
    assert "mqtt_url" in caught.value.problem and caught.value.field == "settings"
    with pytest.raises(configs.ConfigProblems) as caught:
        make(engine, key, settings={"heartbeat_s": -1, "devices": [{"type": "nonsense"}]})
    assert {p.path for p in caught.value.problems} >= {"heartbeat_s", "devices.0.type"}
    with engine.connect() as conn:
        assert configs.newest_version(conn, "gw-a1") == 0  # nothing stored


def test_bad_gate_oversize_unknown_and_revoked_gateways_change_nothing(
        engine: sa.Engine, world: World, key: SigningKey) -> None:
    from server.web.errors import Conflict, InvalidInput, NotFound

    with pytest.raises(InvalidInput, match="gate_s"):
        make(engine, key, gate_s=2.0)
    huge = {"devices": [{"type": "em4100", "id": f"r{i}", "port": "/dev/ttyUSB0"} for i in range(6000)]}
    with pytest.raises(InvalidInput, match="a gateway takes at most"):
        make(engine, key, settings=huge)
    with pytest.raises(InvalidInput, match="U\\+0000"):
        make(engine, key, settings={"devices": [{"type": "em4100", "id": "r\x00"}]})
    with pytest.raises(InvalidInput, match="JSON cannot carry"):
        make(engine, key, settings={"heartbeat_s": float("inf")})
    with pytest.raises(NotFound):
        make(engine, key, gw="gw-nowhere")
    add_gateway(engine, "gw-gone", world.building_a, revoked=True)
    with pytest.raises(Conflict, match="revoked"):
        make(engine, key, gw="gw-gone")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(gateway_configs)).scalar() == 0


def test_history_names_who_made_each_version_and_what_it_changed(
        engine: sa.Engine, world: World, key: SigningKey) -> None:
    make(engine, key, settings={"heartbeat_s": 10}, actor=world.landlord_a.id, comment="first")
    make(engine, key, settings={"heartbeat_s": 10, "outbox": {"max_events": 100}}, actor=world.admin.id)
    make(engine, key, settings={"heartbeat_s": 12, "outbox": {"max_events": 100}})
    with engine.connect() as conn:
        page = configs.history(conn, "gw-a1", limit=2)
        rest = configs.history(conn, "gw-a1", limit=2, before=page["next_before"])
    assert [v["version"] for v in page["versions"]] == [3, 2] and page["next_before"] == 2
    assert page["versions"][0]["changed"] == ["heartbeat_s"] and page["versions"][0]["created_by"] is None
    assert page["versions"][1]["changed"] == ["outbox"]
    assert page["versions"][1]["created_by"] == world.admin.username  # the display name, not an id
    assert [v["version"] for v in rest["versions"]] == [1] and rest["next_before"] is None
    assert rest["versions"][0]["comment"] == "first" and rest["versions"][0]["changed"] == ["heartbeat_s"]


def test_outcomes_follow_the_gateways_status(engine: sa.Engine, world: World, key: SigningKey) -> None:
    for _ in range(3):
        make(engine, key)
    now = datetime.now(UTC)
    # Nothing heard yet: nothing decided.
    with engine.begin() as conn:
        assert record_outcomes(conn, now).outcomes == 0
    # The gateway is trying version 3 (it only ever sees the newest retained one).
    report_status(engine, "gw-a1", running=None, attempted=3, state="applying")
    with engine.begin() as conn:
        record_outcomes(conn, now)
    assert outcomes(engine, "gw-a1") == {1: ("superseded", None), 2: ("superseded", None), 3: (None, None)}
    report_status(engine, "gw-a1", running=3, attempted=3, state="applied")
    with engine.begin() as conn:
        assert record_outcomes(conn, now).outcomes == 1
    assert outcomes(engine, "gw-a1")[3] == ("applied", None)
    # A version that breaks the gateway: rolled back, with its reason.
    make(engine, key)
    report_status(engine, "gw-a1", running=3, attempted=4, state="rolled_back",
                  error="the broker was unreachable for 30 s")
    with engine.begin() as conn:
        record_outcomes(conn, now)
    assert outcomes(engine, "gw-a1")[4] == ("rolled_back", "the broker was unreachable for 30 s")
    # Refused (e.g. a signature it does not trust).
    make(engine, key)
    report_status(engine, "gw-a1", running=3, attempted=5, state="refused", error="unknown key id")
    with engine.begin() as conn:
        record_outcomes(conn, now)
    assert outcomes(engine, "gw-a1")[5] == ("refused", "unknown key id")
    # A decided outcome is never rewritten.
    report_status(engine, "gw-a1", running=5, attempted=5, state="applied")
    with engine.begin() as conn:
        assert record_outcomes(conn, now).outcomes == 0
    assert outcomes(engine, "gw-a1")[5] == ("refused", "unknown key id")


def test_a_version_the_gateway_runs_is_applied_even_when_a_newer_one_failed(
        engine: sa.Engine, world: World, key: SigningKey) -> None:
    make(engine, key)
    make(engine, key)
    # Its first status after both: runs 1, rolled 2 back.
    report_status(engine, "gw-a1", running=1, attempted=2, state="rolled_back", error="reader silent")
    with engine.begin() as conn:
        record_outcomes(conn, datetime.now(UTC))
    assert outcomes(engine, "gw-a1") == {1: ("applied", None), 2: ("rolled_back", "reader silent")}


def test_initial_settings_leave_the_local_file_in_charge() -> None:
    assert configs.initial_settings() == {}


def test_versions_still_being_tried_never_hide_the_ones_after_them(
        engine: sa.Engine, world: World, key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.fleet import config_outcomes

    monkeypatch.setattr(config_outcomes, "PAGE", 2)
    for gw in ("gw-a1", "gw-a2", "gw-b1"):
        make(engine, key, gw=gw)
        report_status(engine, gw, running=None, attempted=1, state="applying")
    add_gateway(engine, "gw-a3", world.building_a)
    make(engine, key, gw="gw-a3")
    report_status(engine, "gw-a3", running=1, attempted=1, state="applied")
    with engine.begin() as conn:
        assert config_outcomes.anything_to_record(conn)
        assert record_outcomes(conn, datetime.now(UTC)).outcomes == 1
        assert not config_outcomes.anything_to_record(conn)
    assert outcomes(engine, "gw-a3") == {1: ("applied", None)}
    assert outcomes(engine, "gw-a1") == {1: (None, None)}
