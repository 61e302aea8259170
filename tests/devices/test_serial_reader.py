from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devices.em4100 import Em4100Frame
from devices.serial_reader import SerialFrameReader
from firmware_sim.em4100_reader import Noise, SimEm4100Reader
from tests.devices.helpers import Collector, wait_until

CARD = Em4100Frame(version=0x14, tag_id=0x008EC793).card


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimEm4100Reader]:
    with SimEm4100Reader("door-a", link=tmp_path / "door-a") as reader:
        yield reader


def start_reader(port: str, got: Collector, **kwargs: Any) -> SerialFrameReader:
    reader = SerialFrameReader(port, on_frame=got.on_frame, on_status=got.on_status, **kwargs)
    reader.start()
    wait_until(lambda: got.online, what="port online")
    return reader


def test_a_tag_held_in_the_field_is_one_read(sim: SimEm4100Reader) -> None:
    got = Collector()
    reader = start_reader(sim.port, got)
    try:
        sim.present(0x008EC793, repeats=5)
        wait_until(lambda: got.cards == [CARD], what="the read")
        wait_until(lambda: reader.stats().debounced == 4, what="repeats suppressed")
        assert reader.stats().frames == 1
    finally:
        reader.stop()


def test_debounce_zero_passes_every_repeat(sim: SimEm4100Reader) -> None:
    got = Collector()
    reader = start_reader(sim.port, got, debounce_s=0)
    try:
        sim.present(0x42, repeats=3, repeat_interval_s=0.01)
        wait_until(lambda: len(got.cards) == 3, what="three reads")
    finally:
        reader.stop()


def test_line_noise_is_counted_and_valid_frames_still_read(sim: SimEm4100Reader) -> None:
    got = Collector()
    reader = start_reader(sim.port, got)
    try:
        noise = Noise(bad_checksum=0.5, split=0.5, garbage=0.5)
        valid = [tag for tag in range(1, 21) if sim.present(tag, repeats=1, noise=noise, repeat_interval_s=0)]
        assert 0 < len(valid) < 20
        expected = [Em4100Frame(version=0x14, tag_id=t).card for t in valid]
        wait_until(lambda: got.cards == expected, what="every valid swipe")
        wait_until(lambda: sim.unread_bytes() == 0, what="line drained")
        assert reader.stats().bad_frames >= 20 - len(valid)
    finally:
        reader.stop()


def test_reader_unplugged_and_plugged_back_is_reported_and_read_again(tmp_path: Path) -> None:
    link = tmp_path / "door-a"
    got = Collector()
    first = SimEm4100Reader("door-a", link=link)
    reader = start_reader(str(link), got, reopen_backoff_max_s=0.3)
    try:
        first.present(0x01, repeats=1)
        wait_until(lambda: len(got.cards) == 1, what="first read")

        first.close()  # the USB adapter is pulled
        assert not link.exists()
        wait_until(lambda: not got.online, what="offline report")
        assert got.statuses[-1][1]  # the reason is given

        with SimEm4100Reader("door-a", link=link) as second:  # a new pty at the same path
            wait_until(lambda: got.online_count() == 2, what="back online")
            second.present(0x02, repeats=1)
            wait_until(lambda: len(got.cards) == 2, what="read after reconnect")
        assert got.cards == [
            Em4100Frame(version=0x14, tag_id=1).card,
            Em4100Frame(version=0x14, tag_id=2).card,
        ]
        assert reader.stats().reopens == 1
    finally:
        reader.stop()
        first.close()


def test_a_port_that_does_not_exist_is_reported_offline_and_stop_is_prompt(tmp_path: Path) -> None:
    got = Collector()
    reader = SerialFrameReader(str(tmp_path / "nothing"), on_frame=got.on_frame, on_status=got.on_status)
    reader.start()
    wait_until(lambda: bool(got.statuses), what="a status")
    assert got.statuses[0][0] is False and "nothing" in (got.statuses[0][1] or "")
    reader.stop(timeout=1.0)
    assert not reader.stats().online and reader.stats().open_failures >= 1


def test_a_failing_callback_does_not_kill_the_reader(sim: SimEm4100Reader) -> None:
    got = Collector()
    calls: list[str] = []

    def explode(frame: object) -> None:
        calls.append("x")
        raise RuntimeError("consumer bug")

    reader = SerialFrameReader(sim.port, on_frame=explode, on_status=got.on_status)
    reader.start()
    try:
        wait_until(lambda: got.online, what="online")
        sim.present(1, repeats=1)
        sim.present(2, repeats=1)
        wait_until(lambda: len(calls) == 2, what="both frames despite the exception")
    finally:
        reader.stop()


def test_the_simulator_never_blocks_when_nobody_reads(sim: SimEm4100Reader) -> None:
    for _ in range(8000):  # ~112 kB, far more than a pty buffers
        sim.write_raw(b"\x02" + b"0" * 12 + b"\x03")
    assert sim.bytes_dropped > 0
