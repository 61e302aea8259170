"""gateway/camera/events.py on its own: what each decision becomes, which
pictures are kept, and that a stop decides the crossings still waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devices.camera.crossing import Crossing
from gateway.camera.correlate import Correlator
from gateway.camera.events import CameraEvents
from gateway.camera.spool import SnapshotSpool
from gateway.outbox import EventMaker
from rentgate import wire
from tests.gateway.camera_fakes import JPEG
from tests.gateway.helpers import wait_until


class Outbox:
    def __init__(self) -> None:
        self.events: list[wire.Event] = []

    def submit(self, makers: Sequence[EventMaker]) -> asyncio.Future[list[int]]:
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        seqs = []
        for make in makers:
            seq = 100 + len(self.events)
            self.events.append(make(seq))
            seqs.append(seq)
        future.set_result(seqs)
        return future


def crossing(direction: str, track: int) -> Crossing:
    return Crossing(t=0.0, direction=direction, track=track, box=(0, 0, 10, 20), snapshot=JPEG)  # type: ignore[arg-type]


async def test_only_alerts_keep_their_pictures_and_a_stop_decides_the_rest(tmp_path: Path) -> None:
    outbox = Outbox()
    spool = SnapshotSpool(tmp_path / "snapshots")
    woken: list[int] = []
    events = CameraEvents("gw-1", outbox.submit, Correlator(grant_before_s=5, grant_after_s=0.2), spool,
                          on_snapshot=lambda: woken.append(1))
    task = asyncio.create_task(events.run())
    now = datetime.now(UTC)
    events.grant("front", now, 7)
    events.crossed("cam-1", "front", crossing("in", 1), now)
    events.crossed("cam-1", "front", crossing("in", 2), now)
    events.crossed("cam-1", "front", crossing("out", 3), now)
    await wait_until(lambda: len(outbox.events) == 3, what="the entry, the tailgating and the exit")
    await wait_until(lambda: spool.count() == 1 and woken == [1], what="the alert's picture spooled")
    events.crossed("cam-1", "front", crossing("in", 4), datetime.now(UTC))
    task.cancel()  # the gateway stops before the last crossing's window closed
    await asyncio.gather(task, return_exceptions=True)

    kinds = [(e.kind, getattr(e, "track")) for e in outbox.events]  # noqa: B009 - every camera event has one
    assert sorted(kinds) == [("people_crossing", 1), ("people_crossing", 3), ("tailgating", 2),
                             ("tailgating", 4)]
    by_track: dict[int, Any] = {getattr(e, "track"): e for e in outbox.events}  # noqa: B009
    assert isinstance(by_track[1], wire.PeopleCrossing) and by_track[1].grant_seq == 7
    assert by_track[1].snapshot is None and by_track[3].snapshot is None
    tail = by_track[2]
    assert isinstance(tail, wire.Tailgating) and tail.snapshot is not None
    assert spool.path_of(tail.snapshot).read_bytes() == JPEG
    # The picture of the alert decided at the stop is recorded with its seq, for upload after the restart.
    assert [u.seq for u in spool.due(now=1e12)] == [by_track[2].seq, by_track[4].seq]
    assert events.stats.snapshots_discarded == 2 and events.stats.snapshots_kept == 2
