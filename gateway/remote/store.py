"""The remote configuration's files in ``<data_dir>/remote/`` (docs/config-rollback.md).

- ``good.json``       the last version that passed its health gate (what a start runs)
- ``candidate.json``  the version being tried
- ``applying``        ``applying N``: present only while version N is in its gate;
                      found at start it means the process died there
- ``state.json``      what the status reports (version, attempted, state, error)
                      and the version that failed, so that its retained copy is
                      not tried again
- ``received.json``   written by ``rentgate gateway enroll``: the first signed
                      configuration, taken at the next start like one from the broker

Every write is atomic and durable (a temporary file, fsync, rename, fsync of
the folder): a power cut leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.health import ConfigReport

log = logging.getLogger(__name__)

FOLDER = "remote"
RECEIVED_FILE = "received.json"
_GOOD, _CANDIDATE, _APPLYING, _STATE = "good.json", "candidate.json", "applying", "state.json"
_MAX_FILE_BYTES = 4 * 1024 * 1024  # far above any configuration (wire.MAX_CONFIG_BYTES is 256 KiB)


def remote_folder(data_dir: Path) -> Path:
    return data_dir / FOLDER


def received_path(data_dir: Path) -> Path:
    """Where enrolment leaves the first configuration (the SignedConfig JSON as received)."""
    return remote_folder(data_dir) / RECEIVED_FILE


def write_received(data_dir: Path, message: bytes) -> Path:
    """For enrolment: keep the first signed configuration for the gateway's next start."""
    path = received_path(data_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, message)
    return path


@dataclass(frozen=True)
class Version:
    """One configuration version as the gateway keeps it: its settings, its
    gate and the signed message it came in (kept for the record)."""

    version: int
    gate_s: float
    settings: dict[str, Any]
    message: str


@dataclass(frozen=True)
class State:
    report: ConfigReport
    failed_version: int | None = None


class RemoteStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    # ------------------------------------------------------------------ versions

    def good(self) -> Version | None:
        return self._version(_GOOD)

    def set_good(self, version: Version) -> None:
        write_atomic(self.folder / _GOOD, _dumps(asdict(version)))

    def candidate(self) -> Version | None:
        return self._version(_CANDIDATE)

    def set_candidate(self, version: Version) -> None:
        write_atomic(self.folder / _CANDIDATE, _dumps(asdict(version)))

    def clear_candidate(self) -> None:
        _remove(self.folder / _CANDIDATE)

    # ------------------------------------------------------------------ the gate marker

    def applying(self) -> int | None:
        text = self._read(_APPLYING)
        if text is None:
            return None
        words = text.decode("ascii", "replace").split()
        if len(words) == 2 and words[0] == "applying" and words[1].isdigit():
            return int(words[1])
        log.warning("%s: unreadable marker %r; taken as no gate in progress", self.folder / _APPLYING, text[:40])
        return None

    def mark_applying(self, version: int) -> None:
        write_atomic(self.folder / _APPLYING, f"applying {version}\n".encode())

    def clear_applying(self) -> None:
        _remove(self.folder / _APPLYING)

    # ------------------------------------------------------------------ what the status says

    def state(self) -> State:
        doc = self._json(_STATE)
        if doc is None:
            return State(ConfigReport())
        try:
            report = ConfigReport(version=_int(doc.get("version")), attempted=_int(doc.get("attempted")),
                                  state=doc.get("state"), error=_text(doc.get("error")))
            if report.state not in (None, "applied", "applying", "rolled_back", "refused"):
                report = ConfigReport(report.version, report.attempted, None, report.error)
            return State(report, _int(doc.get("failed_version")))
        except (TypeError, ValueError):
            log.warning("%s: unreadable; starting from an empty report", self.folder / _STATE)
            return State(ConfigReport())

    def save_state(self, state: State) -> None:
        write_atomic(self.folder / _STATE, _dumps({**asdict(state.report), "failed_version": state.failed_version}))

    # ------------------------------------------------------------------ enrolment's first configuration

    def received(self) -> bytes | None:
        return self._read(RECEIVED_FILE)

    def clear_received(self) -> None:
        _remove(self.folder / RECEIVED_FILE)

    # ------------------------------------------------------------------ reading

    def _read(self, name: str) -> bytes | None:
        path = self.folder / name
        try:
            with path.open("rb") as f:
                return f.read(_MAX_FILE_BYTES)
        except FileNotFoundError:
            return None

    def _json(self, name: str) -> dict[str, Any] | None:
        data = self._read(name)
        if data is None:
            return None
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            # Atomic writes make this a hand edit or a broken disk: say so, go on without it.
            log.warning("%s: not a JSON object; ignored", self.folder / name)
            return None
        return doc

    def _version(self, name: str) -> Version | None:
        doc = self._json(name)
        if doc is None:
            return None
        try:
            return Version(version=int(doc["version"]), gate_s=float(doc["gate_s"]), settings=dict(doc["settings"]),
                           message=str(doc["message"]))
        except (KeyError, TypeError, ValueError):
            log.warning("%s: not a configuration version; ignored", self.folder / name)
            return None


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    fsync_dir(path.parent)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename or removal itself survives a power cut
    finally:
        os.close(dir_fd)


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, indent=1).encode()


def _int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not an integer: {value!r}")
    return value


def _text(value: object) -> str | None:
    return None if value is None else str(value)[:300]
