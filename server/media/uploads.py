"""Files out of a submitted multipart form (``await request.post()``, which
the auth middleware may already have parsed and cached). A file's size is
checked before its bytes are read into memory."""

from __future__ import annotations

from typing import Any

from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from server.media.errors import MediaTooLarge
from server.media.photos import MAX_PHOTO_BYTES

Form = MultiDictProxy[Any]


def _size(field: FileField) -> int:
    file = field.file
    file.seek(0, 2)
    size = file.tell()
    file.seek(0)
    return size


def uploaded_files(form: Form, name: str) -> list[bytes]:
    """The non-empty files sent under ``name`` (an empty file input sends an
    empty part), in order."""
    found: list[bytes] = []
    for value in form.getall(name, []):
        if isinstance(value, FileField):
            size = _size(value)
            if size == 0:
                continue
            if size > MAX_PHOTO_BYTES:
                raise MediaTooLarge(f"a photo may have at most {MAX_PHOTO_BYTES // (1024 * 1024)} MB")
            found.append(value.file.read())
        elif isinstance(value, bytes | bytearray) and value:
            if len(value) > MAX_PHOTO_BYTES:
                raise MediaTooLarge(f"a photo may have at most {MAX_PHOTO_BYTES // (1024 * 1024)} MB")
            found.append(bytes(value))
    return found


def text_fields(form: Form) -> dict[str, str]:
    """The form's text fields (the first value of each name)."""
    out: dict[str, str] = {}
    for key, value in form.items():
        if isinstance(value, str) and key not in out:
            out[key] = value
    return out
