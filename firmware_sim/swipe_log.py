"""A JSON-lines log of the swipes a simulated building makes, one object a
line: ``{"ts": "<ISO time>", "door": "...", "card": "...", "granted": true}``
(``granted``: whether the tenant is expected to be let in). The synthetic
camera follows it (``rentgate sim camera serve --follow``) to walk people
through the door after each swipe.

:class:`SwipeLog` appends (flushed per line, so a follower sees each swipe at
once); :func:`follow` tails the file, surviving it being created late,
truncated or replaced."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

# A line longer than this is no swipe record: skipped, not buffered.
MAX_LINE = 4096


class SwipeLog:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, door: str, card: str, granted: bool, ts: datetime | None = None) -> None:
        line = json.dumps({"ts": (ts or datetime.now(UTC)).isoformat(timespec="milliseconds"), "door": door,
                           "card": card, "granted": granted}, ensure_ascii=False)
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def follow(path: Path | str, stop: threading.Event, *, poll_s: float = 0.1, from_start: bool = False,
           ready: threading.Event | None = None) -> Iterator[dict[str, Any] | None]:
    """Yield each new line's object as it is appended, until ``stop``;
    ``None`` for a line that is not a JSON object (or too long). Lines
    already in the file are skipped unless ``from_start``; a file created
    later is read from its beginning. ``ready`` is set once the file has
    been looked for: every line appended after that is yielded."""
    path = Path(path)
    handle: IO[bytes] | None = None
    inode: int | None = None
    buffer = b""
    skipping = False  # inside an overlong line
    first_open = True
    try:
        while not stop.is_set():
            if handle is None:
                try:
                    handle = open(path, "rb")  # noqa: SIM115 - kept open across iterations, closed below
                except FileNotFoundError:
                    first_open = False
                    if ready is not None:
                        ready.set()
                    stop.wait(poll_s)
                    continue
                inode = os.fstat(handle.fileno()).st_ino
                if first_open and not from_start:
                    handle.seek(0, os.SEEK_END)
                first_open = False
                if ready is not None:
                    ready.set()
                buffer, skipping = b"", False
            chunk = handle.read(65536)
            if chunk:
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if skipping:
                        skipping = False
                        yield None
                        continue
                    yield _parse(line)
                if len(buffer) > MAX_LINE:
                    buffer, skipping = b"", True
                continue
            # Nothing new: the file may have been replaced or cut short.
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is None or st.st_ino != inode or st.st_size < handle.tell():
                handle.close()
                handle = None
                continue
            stop.wait(poll_s)
    finally:
        if handle is not None:
            handle.close()


def _parse(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None
