"""Turning an uploaded photo into what is kept: pure, no I/O.

The type is decided by the first bytes (JPEG or PNG), never by the file name
or the browser's declared type. The image is decoded with Pillow only after
its pixel count (read from the header) is under a limit, so a small file
that would expand to gigabytes (a decompression bomb) is refused before it
is decoded. It is then turned upright (EXIF orientation), shrunk to at most
MAX_SIDE pixels, and re-encoded as JPEG without any metadata: EXIF carries
GPS positions, camera serial numbers and times, which are personal data."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from server.media.errors import MediaTooLarge, UnsupportedMedia

MAX_PHOTO_BYTES = 5 * 1024 * 1024
# 50 megapixels: more than any phone camera's default mode.
MAX_PIXELS = 50_000_000
# Enough to read a label on a fire extinguisher; keeps stored files small.
MAX_SIDE = 2560
JPEG_QUALITY = 85
CONTENT_TYPE = "image/jpeg"

_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"))


@dataclass(frozen=True)
class Photo:
    data: bytes
    width: int
    height: int
    sha256: str
    content_type: str = CONTENT_TYPE


def sniff(head: bytes) -> str | None:
    """"JPEG", "PNG" or None, from the file's first bytes."""
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    return None


def _flatten(image: Image.Image) -> Image.Image:
    """RGB (or greyscale) for JPEG: transparency goes onto white."""
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def process(raw: bytes) -> Photo:
    """The photo to keep, or UnsupportedMedia / MediaTooLarge."""
    if len(raw) > MAX_PHOTO_BYTES:
        raise MediaTooLarge(f"a photo may have at most {MAX_PHOTO_BYTES // (1024 * 1024)} MB")
    kind = sniff(raw[:8])
    if kind is None:
        raise UnsupportedMedia("only JPEG and PNG photos are accepted")
    try:
        with Image.open(io.BytesIO(raw), formats=[kind]) as image:
            if image.width * image.height > MAX_PIXELS:
                raise MediaTooLarge(f"a photo may have at most {MAX_PIXELS // 1_000_000} megapixels")
            if kind == "JPEG":
                # Decode at a reduced scale when the photo is far larger than kept.
                image.draft("RGB", (MAX_SIDE, MAX_SIDE))
            upright = ImageOps.exif_transpose(image)
            upright.thumbnail((MAX_SIDE, MAX_SIDE))
            flat = _flatten(upright)
            out = io.BytesIO()
            # No exif=, icc_profile= or xmp=: nothing of the original's metadata is written.
            flat.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    except MediaTooLarge:
        raise
    except Image.DecompressionBombError:
        raise MediaTooLarge(f"a photo may have at most {MAX_PIXELS // 1_000_000} megapixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            EOFError) as exc:
        raise UnsupportedMedia(f"the {kind} photo cannot be read: {type(exc).__name__}") from None
    data = out.getvalue()
    return Photo(data=data, width=flat.width, height=flat.height, sha256=hashlib.sha256(data).hexdigest())
