"""What the gateway remembers of a terminal across restarts: the allowlist
version it last fully held, when the last full reconciliation ended, and how
far events have been caught up. A small JSON file per terminal, replaced
atomically (write, fsync, rename): a torn file would only cost a full
reconciliation, which every start does anyway, but a wrong "caught up to"
would lose events.

With ``caught_up_to`` goes the one event the gateway knows by its identity
(``marked_serial`` and ``marked_event``: its time and type as the terminal
reported them, nothing personal), asked for again after a start, an outage
or a reboot: gone or another event under that serial means the terminal's
counter restarted. A file from before them loads without it (the check is
skipped until a catch-up learns one)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_MAX_BYTES = 4096
MAX_MARK = 128


@dataclass
class SavedState:
    version_held: int | None = None
    last_full_at: str | None = None  # ISO time, UTC
    caught_up_to: int | None = None  # the highest event serial fetched or skipped on purpose
    # An event at or below caught_up_to known by its identity (sync.event_mark):
    # the newest the catch-up fetched or found. None: none known yet.
    marked_serial: int | None = None
    marked_event: str | None = None

    @classmethod
    def load(cls, path: Path) -> SavedState:
        try:
            raw = path.read_bytes()[:_MAX_BYTES]
            doc = json.loads(raw)
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            log.warning("terminal state %s unreadable, starting afresh: %s", path, exc)
            return cls()
        if not isinstance(doc, dict):
            return cls()
        caught_up_to = _int(doc.get("caught_up_to"))
        marked_serial, marked_event = _int(doc.get("marked_serial")), _mark(doc.get("marked_event"))
        if marked_serial is None or marked_event is None or caught_up_to is None or marked_serial > caught_up_to:
            marked_serial = marked_event = None  # only a whole mark, of an event caught up, is any use
        return cls(version_held=_int(doc.get("version_held")), last_full_at=_text(doc.get("last_full_at")),
                   caught_up_to=caught_up_to, marked_serial=marked_serial, marked_event=marked_event)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(asdict(self), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


def _text(value: object) -> str | None:
    return value[:64] if isinstance(value, str) else None


def _mark(value: object) -> str | None:
    # Whole or not at all: a cut mark would look like another event.
    return value if isinstance(value, str) and 0 < len(value) <= MAX_MARK else None
