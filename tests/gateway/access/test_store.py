"""The allowlist store: signed snapshots and deltas in, lookups out, every bad
message refused with a reason and a counter."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.access.store import COMPACT_AFTER, AllowlistStore
from rentgate import signing, wire
from tests.gateway.access.helpers import GW, KEYS, SERVER_KEY, T0, card, delta, entry, open_store, signed, snapshot


def present(store: AllowlistStore, *values: str) -> set[str]:
    return {v for v in values if store.lookup(card(v)) is not None}


def test_snapshot_then_deltas_build_the_list(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    assert store.apply(snapshot(1, "AA", "BB")).applied
    assert store.apply(delta(1, 2, upserts=("CC",), removals=("AA",))).applied
    result = store.apply(delta(2, 3, upserts=("DD",)))
    assert (result.applied, result.kind, result.version) == (True, "delta", 3)
    assert present(store, "AA", "BB", "CC", "DD") == {"BB", "CC", "DD"}
    assert store.lookup(card("BB")) == entry("BB")
    assert store.is_revoked(card("AA")) and not store.is_revoked(card("ZZ"))
    assert store.counters["applied"] == 3


def test_a_new_snapshot_replaces_the_list_and_remembers_what_it_dropped(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, "AA", "BB"))
    assert store.apply(snapshot(5, "BB", "CC", revoked=("EE",))).applied
    assert present(store, "AA", "BB", "CC") == {"BB", "CC"}
    assert store.is_revoked(card("AA")) and store.is_revoked(card("EE"))
    # Re-issued credentials are no longer revoked.
    store.apply(delta(5, 6, upserts=("AA",)))
    assert not store.is_revoked(card("AA")) and store.lookup(card("AA")) is not None


def test_stale_and_replayed_versions_are_ignored(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(3, "AA"))
    for message in (snapshot(3, "BB"), snapshot(2, "BB"), delta(1, 2, upserts=("BB",)), delta(3, 3)):
        result = store.apply(message)
        assert result.reason == "stale" and result.version == 3
    assert present(store, "AA", "BB") == {"AA"}
    assert store.counters["stale"] == 4


def test_a_delta_that_does_not_follow_the_current_version_asks_for_a_snapshot(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    assert store.apply(delta(1, 2, upserts=("AA",))).need_snapshot  # nothing yet
    store.apply(snapshot(1, "AA"))
    result = store.apply(delta(2, 3, upserts=("BB",)))  # missed 1 -> 2
    assert result.need_snapshot and result.version == 1
    assert store.lookup(card("BB")) is None
    assert store.counters["need_snapshot"] == 2


def test_forged_foreign_and_malformed_messages_are_refused_with_reasons(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, "AA"))
    other_key = signing.generate_private_key()
    good = json.loads(snapshot(2, "EVIL"))
    tampered = json.dumps(dict(good, payload=good["payload"].replace("EVIL", "EVIL2"))).encode()
    bad_payload = b'{"gw":"gw-1","version":9}'
    signed_garbage = wire.signed_allowlist_json(bad_payload.decode(), "k1", signing.sign(bad_payload, SERVER_KEY))
    cases = {
        "bad_signature": [signed(wire.decode_allowlist_update(good["payload"]), key=other_key), tampered],
        "unknown_key": [signed(wire.decode_allowlist_update(good["payload"]), key_id="k9")],
        "wrong_gateway": [snapshot(2, "EVIL", gw="gw-2"), delta(1, 2, upserts=("EVIL",), gw="gw-2")],
        "malformed_envelope": [b"", b"\xff", b"[]", b'{"key_id":"k1"}', b"null"],
        "malformed_payload": [signed_garbage],
    }
    for reason, messages in cases.items():
        for message in messages:
            result = store.apply(message)
            assert (result.reason, result.applied, result.version) == (reason, False, 1), message
            assert result.detail
        assert store.counters[reason] == len(messages)
    assert present(store, "AA", "EVIL", "EVIL2") == {"AA"}


def test_the_list_survives_a_restart(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, "AA", "BB"))
    store.apply(delta(1, 2, upserts=("CC",), removals=("AA",)))
    # Times are datetimes in Python (text only on the wire); a zone other than UTC survives.
    valid = entry("DD", doors=["door-a"], valid_from=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=8))),
                  valid_until=datetime(2027, 1, 1, tzinfo=UTC))
    store.apply(signed(wire.AllowlistDelta(gw=GW, base_version=2, version=3, issued_at=T0,
                                           upserts=[valid])))
    store.close()
    again = open_store(tmp_path)
    assert again.version == 3 and len(again) == 3
    assert again.lookup(card("DD")) == valid and again.lookup(card("BB")) == entry("BB")
    assert again.is_revoked(card("AA"))
    assert again.apply(delta(3, 4, removals=("BB",))).applied


def test_a_list_left_by_another_gateway_is_discarded(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, "AA"))
    store.close()
    other = AllowlistStore(tmp_path / "allowlist.sqlite3", "gw-2", KEYS)
    assert other.version is None and other.lookup(card("AA")) is None


def test_tombstones_are_capped_keeping_the_newest(tmp_path: Path) -> None:
    store = open_store(tmp_path, max_tombstones=2)
    store.apply(snapshot(1, "AA", "BB", "CC"))
    for version, value in enumerate(("AA", "BB", "CC"), start=2):
        store.apply(delta(version - 1, version, removals=(value,)))
    assert [store.is_revoked(card(v)) for v in ("AA", "BB", "CC")] == [False, True, True]
    store.close()
    assert open_store(tmp_path).tombstone_count == 2


def test_readers_never_see_half_a_snapshot(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, *(f"{i:010X}" for i in range(3000))))
    message = snapshot(2, *(f"{i:010X}" for i in range(3000, 8000)))
    sizes: set[int] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            sizes.add(len(store))

    reader = threading.Thread(target=read, name="allowlist-reader")
    reader.start()
    try:
        assert store.apply(message).applied
    finally:
        done.set()
        reader.join()
    assert sizes <= {3000, 5000} and 3000 in sizes, sizes


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AllowlistStore]:
    store = open_store(tmp_path_factory.mktemp("fuzz"))
    store.apply(snapshot(1, "AA"))
    yield store
    store.close()


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.builds(lambda key_id, sig, payload: json.dumps({"key_id": key_id, "signature": sig, "payload": payload}).encode(),
              st.sampled_from(["k1", "k2", ""]), st.text(max_size=100), st.text(max_size=200)),
    # Validly signed garbage reaches the payload parser.
    st.text(max_size=200).map(lambda p: wire.signed_allowlist_json(p, "k1", signing.sign(p.encode(), SERVER_KEY))),
))
def test_garbage_never_raises_and_never_changes_the_list(fuzz_store: AllowlistStore, message: bytes) -> None:
    result = fuzz_store.apply(message)
    assert not result.applied and result.version == 1
    assert present(fuzz_store, "AA") == {"AA"}


def test_a_long_delta_chain_is_compacted_and_still_reloads(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(1, "AA"))
    for version in range(2, 2 + COMPACT_AFTER + 5):
        assert store.apply(delta(version - 1, version, upserts=(f"{version:010X}",), removals=("AA",))).applied
    store.close()
    again = open_store(tmp_path)
    assert again.version == COMPACT_AFTER + 6 and len(again) == COMPACT_AFTER + 5
    assert again.is_revoked(card("AA"))


def test_an_unreadable_file_starts_empty_and_takes_the_next_snapshot(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.apply(snapshot(4, "AA"))
    store.close()
    db = sqlite3.connect(tmp_path / "allowlist.sqlite3")
    db.execute("UPDATE base SET payload = 'garbage'")
    db.commit()
    db.close()
    again = open_store(tmp_path)
    assert again.version is None and again.lookup(card("AA")) is None
    assert again.apply(snapshot(2, "BB")).applied
