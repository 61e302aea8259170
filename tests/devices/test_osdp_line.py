"""OsdpLine against simulated libosdp readers on a real pty."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from devices.osdp import OsdpError, OsdpLine, ReaderSpec
from devices.osdp.line import STOP_WAIT_S
from firmware_sim.osdp_reader import ReaderCaps, SimOsdpLine
from rentgate import wire
from tests.devices.helpers import wait_until

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cards: list[tuple[int, str]] = []
        self.statuses: list[tuple[int, bool]] = []
        self.inputs: list[tuple[int, int, bool]] = []

    def on_card(self, address: int, credential: wire.Credential) -> None:
        with self._lock:
            self.cards.append((address, credential.value))

    def on_status(self, address: int, online: bool, detail: str | None) -> None:
        with self._lock:
            self.statuses.append((address, online))

    def on_input(self, address: int, input_no: int, active: bool) -> None:
        with self._lock:
            self.inputs.append((address, input_no, active))


@contextmanager
def polling(sim: SimOsdpLine, *specs: ReaderSpec, revive_s: float = 1.0) -> Iterator[tuple[OsdpLine, Recorder]]:
    rec = Recorder()
    line = OsdpLine(sim.pts, channel_id=1, readers=list(specs), on_card=rec.on_card, on_status=rec.on_status,
                    on_input=rec.on_input, revive_s=revive_s)
    line.start()
    try:
        wait_until(lambda: all(line.is_online(s.address) for s in specs), what="readers online")
        yield line, rec
    finally:
        line.stop()


@pytest.fixture
def sim() -> Iterator[SimOsdpLine]:
    with SimOsdpLine() as line:
        yield line


def test_two_readers_on_one_line_report_their_own_cards_and_get_their_own_feedback(sim: SimOsdpLine) -> None:
    front, back = sim.add_reader(1), sim.add_reader(2)
    with polling(sim, ReaderSpec(address=1), ReaderSpec(address=2)) as (line, rec):
        front.present(90, 324)
        back.present(12, 3456)
        wait_until(lambda: len(rec.cards) == 2, what="both cards")
        assert sorted(rec.cards) == [(1, "90:324"), (2, "12:3456")]

        assert line.feedback(1, granted=True)
        assert line.feedback(2, granted=False)
        assert line.pulse_output(1, 0, 3000)
        wait_until(lambda: len(front.commands()) == 3 and len(back.commands()) == 2, what="commands")
        assert front.commands("led")[0].fields["on_color"] == 2  # green
        assert back.commands("led")[0].fields["on_color"] == 1  # red
        assert back.commands("buzzer")[0].fields["rep_count"] == 3
        assert front.commands("output")[0].fields["timer_count"] == 30
        assert not back.commands("output")

        back.set_inputs(True)
        wait_until(lambda: rec.inputs == [(2, 0, True)], what="the door contact")


def test_commands_a_reader_did_not_declare_are_not_sent(sim: SimOsdpLine) -> None:
    bare = sim.add_reader(5, caps=ReaderCaps(led=False, buzzer=False, outputs=0, inputs=0))
    with polling(sim, ReaderSpec(address=5)) as (line, rec):
        assert line.feedback(5, granted=True) is False
        with pytest.raises(OsdpError, match="output 0 not declared"):
            line.pulse_output(5, 0, 1000)
        bare.present(1, 1)
        wait_until(lambda: rec.cards == [(5, "1:1")], what="the card")
        assert bare.commands() == []
        assert line.is_online(5)


def test_secure_channel_and_install_mode(sim: SimOsdpLine) -> None:
    keyed = sim.add_reader(1, scbk=KEY)
    fresh = sim.add_reader(2, install_mode=True)
    with polling(sim, ReaderSpec(address=1, scbk=KEY), ReaderSpec(address=2, scbk=KEY, install_mode=True)) as (
            line, rec):
        wait_until(lambda: keyed.secure, what="the secure channel")
        keyed.present(90, 324)
        wait_until(lambda: rec.cards == [(1, "90:324")], what="the card over the secure channel")
        wait_until(lambda: fresh.scbk == KEY, what="the key installed")


def test_garbage_on_the_line_is_survived(sim: SimOsdpLine) -> None:
    reader = sim.add_reader(1)
    with polling(sim, ReaderSpec(address=1)) as (line, rec):
        for _ in range(5):
            sim.inject(b"\x53\x01\xff\x00garbage\x53" * 20)
        reader.present(7, 7)
        wait_until(lambda: rec.cards == [(1, "7:7")], what="the card after the noise")
        assert line.is_online(1)


def test_bad_parity_is_counted_not_reported(sim: SimOsdpLine) -> None:
    reader = sim.add_reader(1)
    with polling(sim, ReaderSpec(address=1)) as (line, rec):
        reader.present_bits(0b00101101000000001010001001, 26)  # odd parity broken
        reader.present(90, 324)
        wait_until(lambda: rec.cards == [(1, "90:324")], what="the good card")
        assert line.stats().bad_cards == 1


def test_unplugged_reader_goes_offline_and_comes_back(sim: SimOsdpLine) -> None:
    _front, back = sim.add_reader(1), sim.add_reader(2)
    with polling(sim, ReaderSpec(address=1), ReaderSpec(address=2), revive_s=0.5) as (line, rec):
        back.unplug()
        # libosdp gives up on a silent reader after about 8 s of retries.
        wait_until(lambda: not line.is_online(2), timeout=15, what="reader 2 offline")
        assert line.is_online(1)
        back.replug()
        wait_until(lambda: line.is_online(2), timeout=5, what="reader 2 back")
        assert [online for address, online in rec.statuses if address == 2] == [True, False, True]
        back.present(3, 4)
        wait_until(lambda: rec.cards == [(2, "3:4")], what="a card after the replug")


def test_setup_errors_name_the_problem() -> None:
    with pytest.raises(OsdpError, match="channel_id"):
        OsdpLine("loop://", channel_id=0, readers=[ReaderSpec(address=1)], on_card=print, on_status=print)
    with pytest.raises(OsdpError, match="repeat"):
        OsdpLine("loop://", channel_id=1, readers=[ReaderSpec(address=1), ReaderSpec(address=1)],
                 on_card=print, on_status=print)
    with pytest.raises(OsdpError, match="16 bytes"):
        ReaderSpec(address=1, scbk=b"short")


def test_stop_returns_even_when_libosdps_thread_is_stuck_in_a_callback(sim: SimOsdpLine) -> None:
    """A gateway once hung at shutdown until it was killed: libosdp's refresh
    thread blocked inside its event callback, and ControlPanel.stop() waits
    for that thread without end. Stopping the line is bounded, and the stuck
    thread cannot keep the process alive (it is a daemon)."""
    import time

    reader = sim.add_reader(1)
    rec = Recorder()
    line = OsdpLine(sim.pts, channel_id=1, readers=[ReaderSpec(address=1)], on_card=rec.on_card,
                    on_status=rec.on_status)
    entered, release = threading.Event(), threading.Event()

    def stuck(pd: int, event: dict[str, object]) -> int:
        entered.set()
        release.wait()  # never set until the end of the test
        return 0

    line._from_libosdp = stuck  # type: ignore[method-assign]
    line.start()
    thread = line._cp.thread
    try:
        # Any event of libosdp's (the reader coming online, or this card) gets stuck.
        reader.present(90, 324)
        assert entered.wait(10), "libosdp never delivered an event"
        assert thread.daemon
        started = time.monotonic()
        line.stop()
        assert time.monotonic() - started < STOP_WAIT_S * 2 + 1
        assert thread.is_alive()  # still stuck, left behind
    finally:
        release.set()
        thread.join(5)
