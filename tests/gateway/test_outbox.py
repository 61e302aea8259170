from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.errors import OutboxError, OutboxLockedError
from gateway.outbox import Outbox, Sourced, new_outbox_first_seq
from gateway.writer import AsyncOutbox
from rentgate import wire
from tests.gateway.helpers import GW, card, cards

REPO = Path(__file__).parents[2]


def _open(tmp_path: Path, **kw: object) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3", gateway_id=GW, **kw)  # type: ignore[arg-type]


def _decoded(outbox: Outbox) -> list[wire.Event]:
    return [wire.decode_events(j)[0] for _, j in outbox.pending(0, 1_000_000)]


def test_a_replaced_outbox_never_reuses_the_old_ones_numbers(tmp_path: Path) -> None:
    clock = [1_795_000_000.0]
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    with _open(old_dir, first_seq=new_outbox_first_seq(lambda: clock[0])) as old:
        old_seqs = old.append(cards(1000))
    clock[0] += 1.0  # the SD card is replaced a second later: a new, empty outbox
    with _open(new_dir, first_seq=new_outbox_first_seq(lambda: clock[0])) as new:
        assert new.first_seq > max(old_seqs)
        assert new.append(cards(1)) == [new.first_seq]
    # An existing file keeps counting where it was, whatever first_seq says.
    with _open(old_dir, first_seq=1) as old:
        assert old.first_seq == min(old_seqs)
        assert old.append(cards(1)) == [max(old_seqs) + 1]


def test_seqs_survive_reopen_and_are_never_reused(tmp_path: Path) -> None:
    with _open(tmp_path) as outbox:
        assert outbox.append(cards(3)) == [1, 2, 3]
        outbox_id = outbox.outbox_id
        assert outbox.delete_ranges([(1, 3)]) == 3
        assert outbox.depth() == 0
    with _open(tmp_path) as outbox:
        assert outbox.outbox_id == outbox_id
        assert outbox.append(cards(2)) == [4, 5]
        assert [seq for seq, _ in outbox.pending(0, 10)] == [4, 5]
        assert outbox.max_seq == 5


def test_events_are_stored_encoded_with_their_seq(tmp_path: Path) -> None:
    with _open(tmp_path) as outbox:
        outbox.append([card("0102030405")])
        [(seq, text)] = outbox.pending(0, 10)
        event = wire.decode_events(text)[0]
        assert (seq, event.seq, event.gw) == (1, 1, GW)
        assert isinstance(event, wire.CardRead) and event.credential.value == "0102030405"


def test_a_bad_event_writes_nothing(tmp_path: Path) -> None:
    def broken(seq: int) -> wire.Event:
        raise ValueError("no")

    with _open(tmp_path) as outbox:
        with pytest.raises(ValueError):
            outbox.append([card(), broken])
        assert outbox.depth() == 0
        assert outbox.append([card()]) == [1]


def test_delete_ranges_and_pending_order(tmp_path: Path) -> None:
    with _open(tmp_path) as outbox:
        outbox.append(cards(10))
        assert outbox.delete_ranges([(2, 3), (7, 7), (50, 60)]) == 3
        assert [s for s, _ in outbox.pending(0, 100)] == [1, 4, 5, 6, 8, 9, 10]
        assert [s for s, _ in outbox.pending(5, 2)] == [6, 8]
        assert [s for s, _ in outbox.select([(8, 100), (1, 4)])] == [1, 4, 8, 9, 10]
        assert outbox.acknowledge([(1, 1)], [(4, 5)]) == (1, 2)
        assert outbox.rejected_total == 2
        assert outbox.depth() == 4
    with _open(tmp_path) as outbox:
        assert outbox.rejected_total == 2
        assert outbox.depth() == 4


def test_full_outbox_drops_oldest_and_says_so_in_the_same_commit(tmp_path: Path) -> None:
    with _open(tmp_path, max_events=10) as outbox:
        outbox.append(cards(10))
        outbox.delete_ranges([(3, 3)])  # acked: a gap the count must not include
        assert outbox.append(cards(3)) == [11, 12, 13]
        events = _decoded(outbox)
        assert len(events) == 10
        dropped = events[-1]
        assert isinstance(dropped, wire.EventsDropped)
        assert (dropped.first_seq, dropped.last_seq, dropped.count, dropped.reason) == (1, 4, 3, "outbox_full")
        assert [e.seq for e in events] == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
        assert outbox.take_drops()[0].count == 3
    with _open(tmp_path, max_events=10) as outbox:
        assert outbox.dropped_total == 3
        assert outbox.max_seq == 14


def test_expired_events_are_dropped_and_reported(tmp_path: Path) -> None:
    now = [1_000_000.0]
    with _open(tmp_path, max_age_s=100, clock=lambda: now[0]) as outbox:
        outbox.append(cards(3))
        now[0] += 60
        outbox.append(cards(2))
        assert outbox.enforce_age() is None
        now[0] += 50
        report = outbox.enforce_age()
        assert report is not None and (report.first_seq, report.last_seq, report.count) == (1, 3, 3)
        events = _decoded(outbox)
        assert [e.seq for e in events] == [4, 5, 6]
        assert isinstance(events[-1], wire.EventsDropped) and events[-1].reason == "outbox_expired"
        assert outbox.dropped_total == 3


def test_second_opener_is_refused(tmp_path: Path) -> None:
    with _open(tmp_path):
        with pytest.raises(OutboxLockedError, match="locked"):
            _open(tmp_path)
    _open(tmp_path).close()  # free again once closed


def test_closed_outbox_refuses_work(tmp_path: Path) -> None:
    outbox = _open(tmp_path)
    outbox.close()
    with pytest.raises(OutboxError, match="closed"):
        outbox.append(cards(1))


_KILL_CHILD = textwrap.dedent(
    """
    import sys
    from gateway.outbox import Outbox, new_outbox_first_seq
    from tests.gateway.helpers import cards
    outbox = Outbox(sys.argv[1], gateway_id="gw-test")
    seqs = outbox.append(cards(250))
    print(seqs[0], seqs[-1], flush=True)
    sys.stdin.read()  # wait here to be killed
    """
)


def test_events_survive_sigkill_right_after_append(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILL_CHILD, str(path)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    assert line.split() == ["1", "250"]
    # The WAL was not checkpointed; reopening must replay it.
    with Outbox(path, gateway_id=GW) as outbox:
        assert outbox.depth() == 250
        assert outbox.append(cards(1)) == [251]


async def test_group_commit_joins_events_that_arrive_during_a_commit(tmp_path: Path) -> None:
    async with await AsyncOutbox.open(str(tmp_path / "o.sqlite3"), gateway_id=GW) as outbox:
        committed: list[list[int]] = []
        outbox.on_commit(committed.append)
        results = await asyncio.gather(*(outbox.append([card()]) for _ in range(200)))
        assert sorted(s for r in results for s in r) == list(range(1, 201))
        # Each caller got its own seq; far fewer transactions than events.
        assert all(len(r) == 1 for r in results)
        assert outbox.commits <= 3
        assert sum(len(c) for c in committed) == 200


async def test_group_commit_isolates_a_bad_event(tmp_path: Path) -> None:
    def broken(seq: int) -> wire.Event:
        raise ValueError("bad device data")

    async with await AsyncOutbox.open(str(tmp_path / "o.sqlite3"), gateway_id=GW) as outbox:
        good1 = outbox.submit([card()])
        bad = outbox.submit([broken])
        good2 = outbox.submit([card()])
        assert await good1 == [1]
        with pytest.raises(ValueError):
            await bad
        assert await good2 == [2]


async def test_close_finishes_the_commit_in_progress(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    outbox = await AsyncOutbox.open(str(path), gateway_id=GW)
    futures = [outbox.submit(cards(5)) for _ in range(10)]
    await outbox.close()
    assert all(f.done() and not f.exception() for f in futures)
    with Outbox(path, gateway_id=GW) as reopened:
        assert reopened.depth() == 50


def _sourced(key: str, value: str = "AB") -> Sourced:
    return Sourced(card(value), key)


def test_an_event_its_device_delivers_again_is_stored_once_even_across_restarts(tmp_path: Path) -> None:
    with _open(tmp_path) as outbox:
        first = outbox.append_each([_sourced("k1t#7/20261206T010203Z/5/1", "01"), card("02")])
        assert first[0] is not None and first[1] is not None
        # The same event twice in one batch, and again beside a new one.
        again = outbox.append_each([_sourced("k1t#7/20261206T010203Z/5/1", "01"),
                                    _sourced("k1t#8/20261206T010204Z/5/1", "03"),
                                    _sourced("k1t#8/20261206T010204Z/5/1", "03")])
        assert again[0] is None and again[1] == first[1] + 1 and again[2] is None
        assert outbox.repeats == 2
        sent = [seq for seq, _ in outbox.pending(0, 100)]
        outbox.delete_ranges([(min(sent), max(sent))])  # the server committed them
    with _open(tmp_path) as outbox:
        # After a restart, with the events long sent: still known.
        assert outbox.append([_sourced("k1t#7/20261206T010203Z/5/1", "01")]) == []
        # Another terminal's serial 7 is its own event.
        assert len(outbox.append([_sourced("k1t-back#7/20261206T010203Z/5/1", "01")])) == 1
        assert [e.credential.value for e in _decoded(outbox) if isinstance(e, wire.CardRead)] == ["01"]


def test_source_keys_go_with_the_age_bound_or_sooner(tmp_path: Path) -> None:
    clock = [1_795_000_000.0]
    with _open(tmp_path, max_age_s=4 * 3600, clock=lambda: clock[0]) as outbox:
        outbox.append([_sourced("k1t#1/-/5/1"), Sourced(card("02"), "zk/CKJS/1001/x", keep_s=3600)])
        clock[0] += 2 * 3600 + 1  # kept to the hour after its time: no finer trace of when
        assert outbox.forget_sources() == 1
        assert outbox.append([Sourced(card("02"), "zk/CKJS/1001/x", keep_s=3600)]) != []
        assert outbox.append([_sourced("k1t#1/-/5/1")]) == []
        clock[0] += 3 * 3600
        outbox.forget_sources()
        # An event that old delivered again is stored again: the server
        # still has the first, and an outbox never holds events that old.
        assert len(outbox.append([_sourced("k1t#1/-/5/1")])) == 1


def test_source_keys_on_disk_are_keyed_digests(tmp_path: Path) -> None:
    """What a person presented may be in an identity (a ZKTeco PIN): the
    table holds a digest keyed with the outbox's own salt, and no time."""
    import sqlite3

    with _open(tmp_path) as outbox:
        outbox.append([Sourced(card("02"), "zk/CKJS201260012/1001/2026-12-06 10:00:00/0/15/None")])
    with _open(tmp_path / "other") as other:
        other.append([Sourced(card("02"), "zk/CKJS201260012/1001/2026-12-06 10:00:00/0/15/None")])
    keys = []
    for path in (tmp_path / "outbox.sqlite3", tmp_path / "other" / "outbox.sqlite3"):
        db = sqlite3.connect(path)
        rows = db.execute("SELECT * FROM sources").fetchall()
        db.close()
        assert len(rows) == 1 and len(rows[0]) == 2 and "1001" not in rows[0][0]
        keys.append(rows[0][0])
    assert keys[0] != keys[1], "the same event is not the same key on two gateways"


def test_source_keys_are_bounded() -> None:
    with pytest.raises(ValueError, match="source key"):
        Sourced(card("01"), "x" * 201)
    with pytest.raises(ValueError, match="source key"):
        Sourced(card("01"), "")


async def test_each_caller_gets_the_seqs_of_what_was_stored(tmp_path: Path) -> None:
    async with await AsyncOutbox.open(str(tmp_path / "outbox.sqlite3"), gateway_id=GW) as outbox:
        committed: list[list[int]] = []
        outbox.on_commit(committed.append)
        a = outbox.submit([_sourced("t#1/-/5/1")])
        b = outbox.submit([_sourced("t#1/-/5/1"), card("02")])
        seqs_a, seqs_b = await a, await b
        assert len(seqs_a) == 1 and len(seqs_b) == 1 and seqs_b[0] == seqs_a[0] + 1
        assert await outbox.append([_sourced("t#1/-/5/1")]) == []
        assert sorted(s for c in committed for s in c) == [seqs_a[0], seqs_b[0]], "a repeat wakes no one"
