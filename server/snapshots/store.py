"""Where snapshots are kept and which event each belongs to.

Files: ``<media folder>/snapshots/<first two hex digits>/<sha256>.jpg``
(server/media/store.py's content-addressed layout, in a folder of their
own so that nothing but this package and its retention ever deletes there).
Rows: ``event_snapshots``, one per event that has its picture.

An upload writes the file first, then the row; a file whose row's
transaction rolled back stays behind unreferenced, and is overwritten by
the same bytes when the gateway retries."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from rentgate import wire
from server.db.models import event_snapshots, events
from server.media.photos import Photo
from server.media.store import MediaStore, media_store
from server.settings import ServerSettings
from server.snapshots.check import CONTENT_TYPE, CheckedJpeg

SUBFOLDER = "snapshots"


def snapshot_files(settings: ServerSettings) -> MediaStore:
    """The snapshots' folder inside the media folder; MediaUnavailable (from
    server/media) when there is none."""
    return MediaStore(media_store(settings).root / SUBFOLDER)


def save_file(files: MediaStore, jpeg: CheckedJpeg) -> None:
    files.save(Photo(data=jpeg.data, width=jpeg.width, height=jpeg.height, sha256=jpeg.sha256,
                     content_type=CONTENT_TYPE))


def delete_file(files: MediaStore, sha256: str) -> bool:
    """Removes one snapshot file; False when it was not there."""
    path: Path = files.path_for(sha256)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class Waiting:
    """An event that takes a picture: its id, the hash it names, when it
    happened, and the hash already stored for it (None: none yet)."""

    event_id: int
    sha256: str
    occurred_at: datetime
    stored_sha256: str | None


def waiting_event(conn: sa.Connection, gateway_id: str, seq: int) -> Waiting | None:
    """The gateway's event ``seq`` if it is one a snapshot belongs to: an
    inward alert, or any camera event that names a snapshot."""
    e, s = events.c, event_snapshots.c
    row = conn.execute(
        sa.select(e.id, e.kind, e.data, e.occurred_at, s.sha256)
        .select_from(events.outerjoin(event_snapshots, s.event_id == e.id))
        .where(e.gateway_id == gateway_id, e.seq == seq)).first()
    if row is None or row.kind not in wire.CAMERA_KINDS:
        return None
    named = (row.data or {}).get("snapshot")
    if not isinstance(named, str) or len(named) != 64:
        return None
    return Waiting(int(row.id), named, row.occurred_at, row.sha256)


def record(conn: sa.Connection, event_id: int, jpeg: CheckedJpeg, gateway_id: str, now: datetime) -> bool:
    """The row for a stored file; False when the event already had one (a
    concurrent identical upload won)."""
    insert = postgresql.insert(event_snapshots) if conn.dialect.name == "postgresql" else sqlite.insert(event_snapshots)
    result = conn.execute(insert.values(event_id=event_id, sha256=jpeg.sha256, size_bytes=len(jpeg.data),
                                        stored_at=now, gateway_id=gateway_id)
                          .on_conflict_do_nothing(index_elements=[event_snapshots.c.event_id]))
    return bool(result.rowcount)


def stored_sha256(conn: sa.Connection, event_id: int) -> str | None:
    """The hash of the event's stored snapshot, or None."""
    found = conn.execute(sa.select(event_snapshots.c.sha256).where(event_snapshots.c.event_id == event_id)).scalar()
    return str(found) if found is not None else None
