"""The camera package's errors, under the devices package's root."""

from __future__ import annotations

from devices.errors import DeviceError


class CameraError(DeviceError):
    """Root of the errors raised by :mod:`devices.camera`."""


class CameraConfigError(CameraError, ValueError):
    """A setting that cannot work: a door line outside the picture, a frame
    rate of zero, an unknown detector. The message says what to change."""


class SourceError(CameraError, OSError):
    """A video source could not be opened or stopped delivering frames."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class BadFrame(CameraError, ValueError):
    """Something that is not a picture was fed to the pipeline (None, an
    empty array, the wrong number of channels): skipped and counted."""
