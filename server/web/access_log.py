"""The HTTP access log, without the secrets some paths carry.

aiohttp's default access log writes every request line. Two public paths
hold something a reader of the log must not be able to use: an enrolment
code (``/e/<code>``, the QR a landlord shows for a new terminal; whoever
presents it first gets a gateway in that building) and a door plate's token
(``/p/<token>``, which is on the door, but a log of which plates were
scanned when is a log of whereabouts). Their secret part is cut to its first
four characters, enough to tell two apart when debugging."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

# /e/<code>, /p/<token> and anything below them.
_SECRET_SEGMENT = re.compile(r"^/(e|p)/([^/?]{4})[^/?]*")


def redact_path(path: str) -> str:
    """``/e/K7QP3MXD9T2R`` → ``/e/K7QP…``; other paths unchanged."""
    return _SECRET_SEGMENT.sub(lambda m: f"/{m.group(1)}/{m.group(2)}…", path, count=1)


class AccessLogger(AbstractAccessLogger):
    """One line per request: address, method, path (redacted), status, size, seconds."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(20):  # logging.INFO
            return
        self.logger.info('%s "%s %s" %s %s %.3fs', request.remote, request.method, redact_path(request.path),
                         response.status, response.body_length, time)
