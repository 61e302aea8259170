"""What the gateway's status says about the box itself (docs/fleet.md): each
device's state, the data folder's disk, the process's and the machine's
memory, and where the remote configuration stands.

Everything here is cheap (a statvfs, two small /proc reads, a dict walk): it
runs on the event loop once per heartbeat.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rentgate import wire

_DETAIL_MAX = 300  # wire.ShortText
# A camera's adapter reports a bad picture as "picture <state>: ..." (gateway/devices/camera.py).
_PICTURE_STATES: dict[str, wire.DeviceHealthState] = {
    "picture frozen": "frozen", "picture dark": "dark", "picture moved": "moved",
}


@dataclass(frozen=True)
class ConfigReport:
    """Where the remote configuration stands, for the status (wire.GatewayStatus):
    ``version`` runs and was found healthy; ``attempted`` is the newest version
    received; ``state`` what became of it and ``error`` why, when it failed."""

    version: int | None = None
    attempted: int | None = None
    state: wire.ConfigState | None = None
    error: str | None = None


@dataclass
class _Device:
    type: str
    online: bool | None = None  # None: has not reported since the gateway started
    detail: str | None = None
    seen_at: float | None = None  # monotonic: when it last answered, as far as we know


class DeviceTracker:
    """The last report of each device, on the loop. A device that is online
    answers now; one that went offline answered last when it went."""

    def __init__(self, devices: list[tuple[str, str]]) -> None:
        self._devices = {device_id: _Device(device_type) for device_id, device_type in devices}

    def update(self, device_id: str, device_type: str, online: bool, detail: str | None) -> None:
        device = self._devices.setdefault(device_id, _Device(device_type))
        if online or device.online:
            device.seen_at = time.monotonic()
        device.online, device.detail = online, detail

    def health(self) -> list[wire.DeviceHealth]:
        now = time.monotonic()
        out = []
        for device_id, device in list(self._devices.items())[:wire.MAX_STATUS_DEVICES]:
            if device.online:
                last_seen: float | None = 0.0
            else:
                last_seen = None if device.seen_at is None else max(0.0, now - device.seen_at)
            out.append(wire.DeviceHealth(
                id=device_id, type=device.type[:32], state=device_state(device.type, device.online, device.detail),
                last_seen_s=last_seen, detail=device.detail[:_DETAIL_MAX] if device.detail else None))
        return out

    def state_of(self, device_id: str) -> tuple[wire.DeviceHealthState, str | None]:
        device = self._devices.get(device_id)
        if device is None:
            return "starting", None
        return device_state(device.type, device.online, device.detail), device.detail


def device_state(device_type: str, online: bool | None, detail: str | None) -> wire.DeviceHealthState:
    if online is None:
        return "starting"
    if online:
        return "ok"
    if device_type != "camera":
        return "offline"
    for prefix, state in _PICTURE_STATES.items():
        if detail is not None and detail.startswith(prefix):
            return state
    return "no_frames"  # unreachable, stalled, ended: no pictures either way


@dataclass(frozen=True)
class Resources:
    disk_free_bytes: int | None
    disk_total_bytes: int | None
    mem_rss_bytes: int | None
    mem_available_bytes: int | None


def resources(data_dir: Path) -> Resources:
    free = total = None
    try:
        usage = shutil.disk_usage(data_dir)
        free, total = usage.free, usage.total
    except OSError:
        pass  # the folder is gone: the outbox will say so louder
    return Resources(free, total, mem_rss(), mem_available())


def mem_rss() -> int | None:
    """The process's resident memory now (Linux), else its peak."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * 1024 if peak > 0 else None  # kilobytes on Linux


def mem_available() -> int | None:
    """What the kernel could give without swapping (Linux's MemAvailable)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
