"""Snapshots waiting for upload: ``<data_dir>/snapshots/<sha256>.jpg`` and a
small SQLite table that says which event each belongs to. Blocking (run it
in a thread); safe to call from several threads.

A picture is written and synced before its event enters the outbox, and
recorded here first (without a seq), so every file in the folder that this
spool made is in the table: pruning deletes only those, never anything else
someone puts in the folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.camera.errors import SpoolError

log = logging.getLogger(__name__)

# A door camera's JPEG at 80 % quality is 30-300 kB; the server refuses
# more than 2 MiB (413, server/snapshots/check.py), so bigger is not kept.
MAX_JPEG_BYTES = 2 * 1024 * 1024
_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL,
    gw TEXT NOT NULL,
    seq INTEGER,            -- NULL until the outbox has numbered the event
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_due ON snapshots (next_try) WHERE seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS snapshots_sha ON snapshots (sha256);
"""


@dataclass(frozen=True)
class PendingUpload:
    id: int
    sha256: str
    gw: str
    seq: int
    created_at: float
    attempts: int


class SnapshotSpool:
    def __init__(self, folder: Path, *, keep_days: float = 7.0, max_files: int = 5000) -> None:
        self.folder = folder
        self.keep_s = keep_days * 86400
        self.max_files = max_files
        self._lock = threading.Lock()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(folder / "pending.sqlite3"), check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(str(folder), f"cannot open: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def path_of(self, sha256: str) -> Path:
        return self.folder / f"{sha256}.jpg"

    # ------------------------------------------------------------------ writing

    def store(self, jpeg: bytes, gw: str, now: float | None = None) -> tuple[int, str]:
        """Write the picture durably and record it; returns (id, sha256). The
        event that names it must then get its seq through :meth:`assign`."""
        if len(jpeg) > MAX_JPEG_BYTES:
            raise SpoolError(str(self.folder), f"a snapshot of {len(jpeg)} bytes is over {MAX_JPEG_BYTES}")
        if not jpeg.startswith(b"\xff\xd8\xff"):
            raise SpoolError(str(self.folder), "the snapshot is not a JPEG")
        sha = hashlib.sha256(jpeg).hexdigest()
        now = time.time() if now is None else now
        with self._lock:
            row: int | None = None
            try:
                row = self._db.execute("INSERT INTO snapshots (sha256, gw, created_at) VALUES (?, ?, ?)",
                                       (sha, gw, now)).lastrowid
                self._write(self.path_of(sha), jpeg)
            except (OSError, sqlite3.Error) as exc:
                if row is not None:
                    self._db.execute("DELETE FROM snapshots WHERE id = ?", (row,))
                raise SpoolError(str(self.folder), f"cannot write a snapshot: {exc}") from exc
            assert row is not None
            self._bound_count()
        return row, sha

    def assign(self, row: int, seq: int) -> None:
        """The outbox numbered the event: the picture can be uploaded."""
        with self._lock:
            self._db.execute("UPDATE snapshots SET seq = ? WHERE id = ?", (seq, row))

    def forget(self, row: int) -> None:
        """The event did not reach the outbox (or was uploaded, or refused):
        the record goes, and the file unless another event shares it."""
        with self._lock:
            self._delete(row)

    def retry(self, row: int, next_try: float) -> None:
        with self._lock:
            self._db.execute("UPDATE snapshots SET attempts = attempts + 1, next_try = ? WHERE id = ?",
                             (next_try, row))

    # ------------------------------------------------------------------ reading

    def due(self, now: float, limit: int = 20) -> list[PendingUpload]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, sha256, gw, seq, created_at, attempts FROM snapshots "
                "WHERE seq IS NOT NULL AND next_try <= ? ORDER BY next_try, id LIMIT ?", (now, limit)).fetchall()
        return [PendingUpload(*r) for r in rows]

    def next_try(self) -> float | None:
        with self._lock:
            (value,) = self._db.execute("SELECT min(next_try) FROM snapshots WHERE seq IS NOT NULL").fetchone()
        return float(value) if value is not None else None

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT count(*) FROM snapshots").fetchone()
        return int(n)

    def read(self, sha256: str) -> bytes | None:
        try:
            return self.path_of(sha256).read_bytes()
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------ bounds

    def prune(self, now: float | None = None) -> int:
        """Delete what is older than the keep time, including a picture whose
        event never got a seq (the gateway stopped between the two writes);
        returns how many went."""
        now = time.time() if now is None else now
        with self._lock:
            rows = [r for (r,) in self._db.execute("SELECT id FROM snapshots WHERE created_at < ?",
                                                   (now - self.keep_s,))]
            for row in rows:
                self._delete(row)
            return len(rows) + self._bound_count()

    def _bound_count(self) -> int:
        (n,) = self._db.execute("SELECT count(*) FROM snapshots").fetchone()
        excess = int(n) - self.max_files
        if excess <= 0:
            return 0
        rows = [r for (r,) in self._db.execute("SELECT id FROM snapshots ORDER BY id LIMIT ?", (excess,))]
        for row in rows:
            self._delete(row)
        log.warning("snapshot spool over %d pictures: the %d oldest deleted unsent", self.max_files, len(rows))
        return len(rows)

    def _delete(self, row: int) -> None:
        found = self._db.execute("SELECT sha256 FROM snapshots WHERE id = ?", (row,)).fetchone()
        if found is None:
            return
        self._db.execute("DELETE FROM snapshots WHERE id = ?", (row,))
        (others,) = self._db.execute("SELECT count(*) FROM snapshots WHERE sha256 = ?", (found[0],)).fetchone()
        if not others:
            try:
                self.path_of(found[0]).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("snapshot spool: cannot delete a picture: %s", exc)

    def _write(self, path: Path, data: bytes) -> None:
        if path.exists():
            return  # the same picture, already durable
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)
