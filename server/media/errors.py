"""The media package's exception root."""

from __future__ import annotations

from server.errors import ServerError


class MediaError(ServerError):
    """Root of the media package's errors."""


class UnsupportedMedia(MediaError):
    """Not a JPEG or PNG photo, or one that cannot be decoded (HTTP 415)."""


class MediaTooLarge(MediaError):
    """Over the byte or pixel limit (HTTP 413)."""


class MediaUnavailable(MediaError):
    """No folder to keep photos in (HTTP 503): PostgreSQL without
    ``RENTGATE_MEDIA_DIR``, or an in-memory database."""
