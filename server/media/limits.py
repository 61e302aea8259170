"""Request body limits. aiohttp refuses bodies over the application's
``client_max_size`` (1 MiB by default), which a phone photo exceeds. The
application allows UPLOAD_BODY_MAX (a patrol's four photos at the largest
size, plus the form), and ``body_limit_middleware`` keeps every other route
at the old 1 MiB for bodies that declare their length, so the JSON API
does not start buffering 20 MB requests."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from server.media.photos import MAX_PHOTO_BYTES

MAX_PHOTOS_PER_FORM = 4
UPLOAD_BODY_MAX = MAX_PHOTOS_PER_FORM * MAX_PHOTO_BYTES + 1024 * 1024
OTHER_BODY_MAX = 1024 * 1024
# The forms that take photos.
UPLOAD_PATHS = re.compile(r"/p/[^/]+/report|/c/units/\d+/patrol")
# Routes that read their body as a stream with a bound of their own (the
# police batch: 100,000 numbers are 2-4 MB; server/police/batch.py refuses
# past 16 MiB).
STREAMED_PATHS = frozenset({"/api/v1/police/checks/batch"})
# A camera snapshot's upload reads its body with a bound of its own (2 MiB,
# server/snapshots/upload.py).
STREAMED_PATTERN = re.compile(r"/api/v1/gateways/[^/]+/events/[^/]+/snapshot")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    length = request.content_length
    if (length is not None and length > OTHER_BODY_MAX and not UPLOAD_PATHS.fullmatch(request.path)
            and request.path not in STREAMED_PATHS and not STREAMED_PATTERN.fullmatch(request.path)):
        raise web.HTTPRequestEntityTooLarge(max_size=OTHER_BODY_MAX, actual_size=length)
    return await handler(request)
