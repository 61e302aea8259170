"""Errors raised by device code. Parsers never raise on wire input: they count
bad frames instead. These are for misuse and for ports that cannot be used."""

from __future__ import annotations


class DeviceError(Exception):
    """Root of every error raised by :mod:`devices`."""


class FrameError(DeviceError, ValueError):
    """A frame cannot be built from the given fields."""


class PortError(DeviceError, OSError):
    """A serial port could not be opened or stopped working."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
