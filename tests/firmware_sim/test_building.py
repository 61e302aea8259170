from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from devices.serial_reader import Frame, SerialFrameReader
from firmware_sim.building import BuildingSim
from firmware_sim.config import BuildingConfig
from tests.devices.helpers import Collector, wait_until


def config(tmp_path: Path, **swipes: object) -> BuildingConfig:
    return BuildingConfig.model_validate(
        {
            "name": "Block 7",
            "seed": 3,
            "doors": [{"id": "door-a", "link": str(tmp_path / "door-a")}, {"id": "door-b"}],
            "tenants": {"count": 6},
            "swipes": {
                "pattern": "burst",
                "total": 30,
                "repeats": 2,
                "burst_gap_s": 0.05,
                # The config's default: longer than the gateway's 0.8 s debounce
                # window with room for a stalled reader thread on a busy machine.
                "min_same_tag_gap_s": 1.5,
                **swipes,
            },
            "noise": {"bad_checksum": 0.3, "split": 0.3, "garbage": 0.2, "extra_repeats": 0.2},
        }
    )


class DoorReads:
    """One gateway-side SerialFrameReader per door, recording (door, card)."""

    def __init__(self, sim: BuildingSim) -> None:
        self.reads: list[tuple[str, str]] = []
        self.status = {door: Collector() for door in sim.ports()}
        self.readers = [
            SerialFrameReader(port, on_frame=self._on_frame_for(door), on_status=self.status[door].on_status)
            for door, port in sim.ports().items()
        ]

    def _on_frame_for(self, door: str) -> Callable[[Frame], None]:
        def on_frame(frame: Frame) -> None:
            self.reads.append((door, frame.card))  # list.append is atomic

        return on_frame

    def __enter__(self) -> DoorReads:
        for reader in self.readers:
            reader.start()
        wait_until(lambda: all(c.online for c in self.status.values()), what="every door online")
        return self

    def __exit__(self, *exc: object) -> None:
        for reader in self.readers:
            reader.stop()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[BuildingSim]:
    with BuildingSim(config(tmp_path)) as building:
        yield building


def test_every_swipe_with_a_valid_frame_is_read_exactly_once(sim: BuildingSim, tmp_path: Path) -> None:
    assert sim.ports()["door-a"] == str(tmp_path / "door-a")
    assert sim.ports()["door-b"].startswith("/dev/pts/")
    with DoorReads(sim) as gateway:
        sim.start()
        assert sim.wait(timeout=30), "the simulation did not finish"
        stats = sim.stats()
        wait_until(lambda: all(d.reader.unread_bytes == 0 for d in sim.stats().doors.values()), what="lines drained")
        wait_until(lambda: len(gateway.reads) >= len(stats.expected_reads), what="all expected reads")

    assert stats.swipes == 30
    # The noise is heavy enough that some swipes lose every frame, but not all.
    assert 0 < stats.swipes_with_valid_frame < stats.swipes
    assert len(stats.expected_reads) == stats.swipes_with_valid_frame
    assert Counter(gateway.reads) == Counter(stats.expected_reads)
    for door in ("door-a", "door-b"):
        assert [r for r in gateway.reads if r[0] == door] == [r for r in stats.expected_reads if r[0] == door]
    assert {card for _, card in stats.expected_reads} <= set(sim.cards())


def test_the_same_seed_gives_the_same_tenants(tmp_path: Path) -> None:
    assert config(tmp_path).tag_ids() == config(tmp_path).tag_ids()
    assert len(set(config(tmp_path).tag_ids())) == 6


def test_poisson_swipes_stop_at_the_duration(tmp_path: Path) -> None:
    cfg = config(tmp_path, pattern="poisson", rate_per_min=600, total=None, duration_s=1.0)
    with BuildingSim(cfg) as sim, DoorReads(sim):
        stats = sim.run()
    assert 1.0 <= stats.elapsed_s < 3.0
    assert stats.swipes > 0


def test_stop_ends_an_endless_run_promptly(tmp_path: Path) -> None:
    cfg = config(tmp_path, total=None)
    with BuildingSim(cfg) as sim:
        sim.start()
        wait_until(lambda: sim.stats().swipes >= 2, what="some swipes")
        sim.stop()
        assert sim.wait(timeout=0)
    assert not (tmp_path / "door-a").exists(), "closing unplugs the reader and removes its link"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"tenants": {"count": 2, "tag_ids": [1]}}, "tenants"),
        ({"doors": [{"id": "a"}, {"id": "a"}]}, "door ids must be unique"),
        ({"noise": {"split": 1.5}}, "noise.split"),
        ({"swipes": {"rate": 3}}, "swipes.rate"),
    ],
)
def test_bad_configs_are_refused_with_the_key(tmp_path: Path, change: dict[str, object], where: str) -> None:
    raw = config(tmp_path).model_dump() | change
    with pytest.raises(ValidationError) as info:
        BuildingConfig.model_validate(raw)
    text = str(info.value)
    assert where.split(".")[0] in text and where.split(".")[-1] in text
