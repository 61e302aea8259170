"""Is an uploaded snapshot a real JPEG within bounds? Pure, no I/O.

Unlike patrol photos (server/media/photos.py) the bytes are kept exactly
as sent, never re-encoded: the event names their SHA-256, and the stored
file must keep hashing to it. So the check only reads: the type from the
first bytes (never the declared Content-Type), the pixel count from the
header before anything is decoded (a small file that would expand to
gigabytes is refused unread), then a decode at 1/8 scale, which walks all
of the compressed data (a truncated or corrupt file fails) at a small
fraction of a full decode's memory and time."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from server.media.photos import sniff
from server.snapshots.errors import NotAJpeg, SnapshotTooLarge

# A door camera's frame is 1-8 megapixels and its JPEG a few hundred KB;
# twice the size of a 4K frame at high quality is enough.
MAX_SNAPSHOT_BYTES = 2 * 1024 * 1024
# 4096 x 4096: above any door camera's resolution (4K is 8.3 MP).
MAX_SNAPSHOT_PIXELS = 4096 * 4096
CONTENT_TYPE = "image/jpeg"


@dataclass(frozen=True)
class CheckedJpeg:
    data: bytes
    width: int
    height: int
    sha256: str


def check_jpeg(raw: bytes) -> CheckedJpeg:
    """The bytes with their size and hash, or NotAJpeg / SnapshotTooLarge."""
    if len(raw) > MAX_SNAPSHOT_BYTES:
        raise SnapshotTooLarge(f"a snapshot may have at most {MAX_SNAPSHOT_BYTES // (1024 * 1024)} MiB")
    if sniff(raw[:8]) != "JPEG":
        raise NotAJpeg("a snapshot must be a JPEG image")
    try:
        with Image.open(io.BytesIO(raw), formats=["JPEG"]) as image:
            width, height = image.size
            if width * height > MAX_SNAPSHOT_PIXELS:
                raise SnapshotTooLarge(f"a snapshot may have at most {MAX_SNAPSHOT_PIXELS:,} pixels")
            image.draft(image.mode if image.mode in ("L", "RGB") else "RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
    except SnapshotTooLarge:
        raise
    except Image.DecompressionBombError:
        raise SnapshotTooLarge(f"a snapshot may have at most {MAX_SNAPSHOT_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise NotAJpeg(f"the JPEG cannot be read: {type(exc).__name__}") from None
    return CheckedJpeg(data=raw, width=width, height=height, sha256=hashlib.sha256(raw).hexdigest())
