"""The snapshots package's exception root."""

from __future__ import annotations

from server.errors import ServerError


class SnapshotError(ServerError):
    """Root of the snapshots package's errors."""


class NotAJpeg(SnapshotError):
    """The body is not a JPEG that decodes (HTTP 415)."""


class SnapshotTooLarge(SnapshotError):
    """Over the byte or pixel bound (HTTP 413)."""


class NotWaiting(SnapshotError):
    """No event of this gateway is waiting for these bytes (HTTP 404): no
    such event, another kind, another hash. One answer for every case, so a
    caller without the picture learns nothing about the gateway's events."""
