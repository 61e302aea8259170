"""The retention job deletes snapshots past the period (file and row),
keeps newer ones and every event, and never a file no row names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from server.audit.log import AuditLog
from server.db.models import audit_log, event_snapshots, events
from server.media.store import MediaStore
from server.retention.job import PurgeJob
from server.retention.metrics import render
from server.snapshots.check import check_jpeg
from server.snapshots.store import record, save_file
from server.web.transactions import write_transaction
from tests.server.scan.world import ScanWorld, jpeg_bytes
from tests.server.snapshots.world import Door, sha

ZONE = ZoneInfo("Asia/Shanghai")


def files_of(world: ScanWorld) -> MediaStore:
    assert world.settings.media_dir is not None
    return MediaStore(Path(world.settings.media_dir) / "snapshots")


def store(engine: sa.Engine, files: MediaStore, event_id: int, data: bytes, stored_at: datetime,
          occurred_at: datetime | None = None) -> None:
    jpeg = check_jpeg(data)
    save_file(files, jpeg)
    with write_transaction(engine) as conn:
        record(conn, event_id, jpeg, "gw-xf", stored_at)
        if occurred_at is not None:
            conn.execute(sa.update(events).where(events.c.id == event_id).values(occurred_at=occurred_at))


def job(engine: sa.Engine, files: MediaStore | None, days: int = 30) -> PurgeJob:
    return PurgeJob(engine, zone=ZONE, retention_days=180, interval_s=3600.0, audit=lambda: AuditLog(engine),
                    snapshot_retention_days=days, snapshot_files=lambda: files)


async def test_old_snapshots_go_new_ones_and_the_events_stay(world: ScanWorld, door: Door, engine: sa.Engine) -> None:
    files = files_of(world)
    now = datetime.now(UTC)
    # Arrived 31 days ago; taken 40 days ago but arrived yesterday (a gateway
    # that was offline); and a fresh one.
    store(engine, files, door.unidentified_id, door.unidentified, now - timedelta(days=31))
    store(engine, files, door.far_id, door.far, now - timedelta(days=1), occurred_at=now - timedelta(days=40))
    store(engine, files, door.tailgating_id, door.tailgating, now - timedelta(days=2))
    # A file in the folder that no row names: not the job's to delete.
    stray = jpeg_bytes((16, 16))
    save_file(files, check_jpeg(stray))

    purge = job(engine, files)
    report = await purge.run_once(now)
    assert report is not None
    snapshots = purge.last_snapshot_report
    assert snapshots is not None and snapshots.deleted == 2 and snapshots.files_deleted == 2
    assert snapshots.as_json()["deleted"] == 2

    with engine.connect() as conn:
        left = dict(conn.execute(sa.select(event_snapshots.c.event_id, event_snapshots.c.sha256)).tuples().all())
        kept_events = dict(conn.execute(sa.select(events.c.id, events.c.data)
                                        .where(events.c.id.in_([door.unidentified_id, door.far_id]))).tuples().all())
        audited = conn.execute(sa.select(audit_log.c.record).where(audit_log.c.action == "retention.snapshots")
                               ).scalars().all()
    assert left == {door.tailgating_id: sha(door.tailgating)}
    assert not files.path_for(sha(door.unidentified)).exists() and not files.path_for(sha(door.far)).exists()
    assert files.path_for(sha(door.tailgating)).read_bytes() == door.tailgating
    assert files.path_for(sha(stray)).exists()
    # The events stay, with the hash as evidence that a picture existed.
    assert kept_events[door.unidentified_id]["snapshot"] == sha(door.unidentified)
    assert len(kept_events) == 2
    assert len(audited) == 1 and '"size":2' in audited[0]
    assert purge.metrics.snapshots_purged_total == 2
    assert "rentgate_snapshots_purged_total 2" in render(purge.metrics)

    # Nothing more is due: a second run deletes nothing.
    await purge.run_once(now)
    assert purge.last_snapshot_report is not None and purge.last_snapshot_report.deleted == 0


async def test_a_snapshot_goes_before_its_event_is_purged(world: ScanWorld, door: Door, engine: sa.Engine) -> None:
    """With snapshots kept longer than events, the event purge must not be
    blocked by the row that refers to its event."""
    files = files_of(world)
    now = datetime.now(UTC)
    store(engine, files, door.unidentified_id, door.unidentified, now - timedelta(days=1),
          occurred_at=now - timedelta(days=200))
    purge = PurgeJob(engine, zone=ZONE, retention_days=180, interval_s=3600.0, audit=lambda: AuditLog(engine),
                     snapshot_retention_days=365, snapshot_files=lambda: files)
    await purge.run_once(now)
    assert purge.last_snapshot_report is not None and purge.last_snapshot_report.deleted == 1
    assert not files.path_for(sha(door.unidentified)).exists()


async def test_without_a_media_folder_rows_go_and_files_are_counted_as_left(
        world: ScanWorld, door: Door, engine: sa.Engine) -> None:
    files = files_of(world)
    now = datetime.now(UTC)
    store(engine, files, door.unidentified_id, door.unidentified, now - timedelta(days=31))
    purge = job(engine, None)
    await purge.run_once(now)
    snapshots = purge.last_snapshot_report
    assert snapshots is not None and (snapshots.deleted, snapshots.files_left) == (1, 1)
