"""Where photos are kept: files named by the SHA-256 of their bytes under
the media folder (``<root>/<first two hex digits>/<sha256>.jpg``), so the
same photo sent twice is stored once, and a file can never be swapped for
another under its name. The ``attachments`` row says what a file is and who
sent it. A file written by a transaction that then rolls back stays behind,
unreferenced and harmless."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from server.db.models import attachments
from server.media.errors import MediaUnavailable
from server.media.photos import Photo
from server.settings import ServerSettings

DEFAULT_FOLDER = "media"


@dataclass(frozen=True)
class MediaStore:
    root: Path

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(ch in "0123456789abcdef" for ch in sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / f"{sha256}.jpg"

    def save(self, photo: Photo) -> None:
        target = self.path_for(photo.sha256)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}-{id(photo)}")
        with open(tmp, "wb") as out:
            out.write(photo.data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)

    def read(self, sha256: str) -> bytes | None:
        try:
            return self.path_for(sha256).read_bytes()
        except (OSError, ValueError):
            return None


def media_store(settings: ServerSettings) -> MediaStore:
    """The configured folder, or "media" next to a SQLite database file;
    MediaUnavailable (with what to do) otherwise."""
    if settings.media_dir:
        return MediaStore(Path(settings.media_dir))
    url = make_url(settings.database_url)
    database = url.database
    if url.get_backend_name() != "sqlite":
        raise MediaUnavailable("photos cannot be stored: set RENTGATE_MEDIA_DIR (only a SQLite server keeps "
                               "them next to its database by default)")
    if not database or database == ":memory:" or database.startswith("file:"):
        raise MediaUnavailable("photos cannot be stored: an in-memory database has no folder; "
                               "set RENTGATE_MEDIA_DIR")
    return MediaStore(Path(database).resolve().parent / DEFAULT_FOLDER)


def add_attachment(conn: sa.Connection, store: MediaStore, now: datetime, actor: str, photo: Photo) -> int:
    """Store the file, then its row (in the caller's transaction); the row's id."""
    store.save(photo)
    attachment_id: int = conn.execute(sa.insert(attachments).values(
        sha256=photo.sha256, content_type=photo.content_type, size=len(photo.data), width=photo.width,
        height=photo.height, created_at=now, actor=actor[:64],
    ).returning(attachments.c.id)).scalar_one()
    return attachment_id
