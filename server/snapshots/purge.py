"""Snapshots past the retention period go: file and row; the event stays,
its ``snapshot`` hash kept as evidence that a picture existed. Run by the
retention job (server/retention/job.py) before the purge of raw events.

A snapshot goes when it arrived (``stored_at``, the server's clock) or was
taken (the event's ``occurred_at``, the gateway's clock) before the
cut-off, whichever is earlier, so neither a late upload nor a gateway clock
ahead keeps a face longer; and before its event is purged (``event_before``)
in any case, since the row refers to the event.

Only files this table names are deleted (the project's rule: nothing
deletes what it did not create), and a row is deleted in the same
transaction as its audit entry, the file right after the commit: a crash in
between leaves a file no row names, which the next run does not touch
(it is counted and logged as ``files_left`` when it happens). A file shared
by two rows (the same picture for two events) is deleted with the last."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from server.audit.entries import AuditEntry
from server.db.models import event_snapshots, events
from server.media.store import MediaStore
from server.snapshots.store import delete_file
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

ACTION = "retention.snapshots"
BATCH = 500


class AuditSink(Protocol):
    def append_in(self, conn: sa.Connection, *entries: AuditEntry, now: datetime | None = None) -> Any: ...


@dataclass
class SnapshotPurgeReport:
    cutoff: datetime
    run: str
    deleted: int = 0
    files_deleted: int = 0
    # Rows whose file was already gone.
    files_missing: int = 0
    # Files that could not be deleted (no media folder, a permission error).
    files_left: int = 0
    batches: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"run": self.run, "cutoff": self.cutoff.isoformat(), "deleted": self.deleted,
                "files_deleted": self.files_deleted, "files_missing": self.files_missing,
                "files_left": self.files_left, "batches": self.batches}


def _due(cutoff: datetime, event_before: datetime | None) -> sa.Select[tuple[int, str]]:
    s, e = event_snapshots.c, events.c
    # Taken before the cut-off, or of an event the event purge will take.
    taken_before = cutoff if event_before is None else max(cutoff, event_before)
    return (sa.select(s.event_id, s.sha256).select_from(event_snapshots.join(events, e.id == s.event_id))
            .where(sa.or_(s.stored_at < cutoff, e.occurred_at < taken_before)))


@dataclass(frozen=True)
class SnapshotStatus:
    """What ``rentgate retention status`` says of snapshots: how many are
    stored, and how many a purge with the same cut-offs would delete."""

    retention_days: int
    stored: int
    due: int

    def as_json(self) -> dict[str, Any]:
        return {"retention_days": self.retention_days, "stored": self.stored, "due": self.due}


def snapshot_status(conn: sa.Connection, retention_days: int, cutoff: datetime, *,
                    event_before: datetime | None = None) -> SnapshotStatus:
    """Two counts over event_snapshots (small: pictures of alerts only)."""
    stored = conn.execute(sa.select(sa.func.count()).select_from(event_snapshots)).scalar_one()
    due = conn.execute(sa.select(sa.func.count()).select_from(_due(cutoff, event_before).subquery())).scalar_one()
    return SnapshotStatus(retention_days, int(stored), int(due))


def purge_snapshots(engine: sa.Engine, files: MediaStore | None, cutoff: datetime, *, audit: AuditSink,
                    actor: str, event_before: datetime | None = None, batch: int = BATCH,
                    should_stop: Callable[[], bool] | None = None) -> SnapshotPurgeReport:
    """Deletes the snapshots due (blocking: run it in a thread). ``files``
    None: no media folder is configured, so rows go and their files (if
    any exist somewhere) are counted as left."""
    report = SnapshotPurgeReport(cutoff=cutoff, run=uuid.uuid4().hex[:12])
    s = event_snapshots.c
    while not (should_stop is not None and should_stop()):
        with write_transaction(engine) as conn:
            rows = conn.execute(_due(cutoff, event_before).order_by(s.event_id).limit(batch)).all()
            if not rows:
                break
            conn.execute(sa.delete(event_snapshots).where(s.event_id.in_([r.event_id for r in rows])))
            hashes = {str(r.sha256) for r in rows}
            still_named = set(conn.execute(sa.select(s.sha256).distinct().where(s.sha256.in_(hashes))).scalars())
            audit.append_in(conn, AuditEntry(actor=actor, action=ACTION, size=len(rows), detail={
                "run": report.run, "batch": report.batches + 1, "cutoff": cutoff.isoformat()}))
        report.batches += 1
        report.deleted += len(rows)
        for sha256 in sorted(hashes - still_named):
            _delete(files, sha256, report)
    if report.deleted:
        log.info("retention: deleted %s camera snapshots before %s (%s files; %s already gone, %s left)",
                 report.deleted, cutoff.isoformat(), report.files_deleted, report.files_missing, report.files_left)
    if report.files_left:
        log.warning("retention: %s snapshot files could not be deleted; their rows are gone", report.files_left)
    return report


def _delete(files: MediaStore | None, sha256: str, report: SnapshotPurgeReport) -> None:
    if files is None:
        report.files_left += 1
        return
    try:
        if delete_file(files, sha256):
            report.files_deleted += 1
        else:
            report.files_missing += 1
    except OSError as exc:
        log.warning("retention: snapshot file %s… not deleted: %s", sha256[:12], exc)
        report.files_left += 1
