"""One terminal's ISAPI over HTTP: an aiohttp session with digest
authentication, bounded answers, and errors mapped onto the sync's own.

The password is read when the session opens and lives only in the digest
middleware; it is never logged nor put in an error."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp

from devices import hikvision_isapi as isapi
from gateway.terminals.config import TerminalSyncConfig
from gateway.terminals.errors import TerminalAnswerError, TerminalRefused, TerminalUnreachable

log = logging.getLogger(__name__)
T = TypeVar("T")

# A page of 30 users is a few kilobytes; nothing a terminal answers is near this.
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class IsapiClient:
    def __init__(self, config: TerminalSyncConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is not None:
            return
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s, connect=self.config.request_timeout_s)
        digest = aiohttp.DigestAuthMiddleware(self.config.username, self.config.password())
        # One connection: a terminal serves one request at a time anyway.
        connector = aiohttp.TCPConnector(limit=1)
        self._session = aiohttp.ClientSession(self.config.url, timeout=timeout, middlewares=(digest,),
                                              connector=connector, raise_for_status=False)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def call(self, method: str, path: str, operation: str, body: dict[str, Any] | None = None) -> bytes:
        """The answer's body, once :func:`isapi.raise_for_status` found it a success."""
        await self.open()
        assert self._session is not None
        try:
            async with self._session.request(method, path, json=body) as response:
                raw = await response.content.read(MAX_ANSWER_BYTES + 1)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TerminalUnreachable(self.config.id, f"{operation}: {type(exc).__name__} {exc}"[:300]) from exc
        if len(raw) > MAX_ANSWER_BYTES:
            raise TerminalAnswerError(self.config.id, f"{operation}: answer over {MAX_ANSWER_BYTES} bytes")
        try:
            isapi.raise_for_status(operation, status, raw)
        except isapi.IsapiError as exc:
            raise TerminalRefused(self.config.id, str(exc)[:300], refused=exc.refused,
                                  sub_status=exc.sub_status, http_status=exc.http_status) from exc
        return raw

    async def parsed(self, method: str, path: str, operation: str, body: dict[str, Any] | None,
                     parse: Callable[[bytes], T]) -> T:
        raw = await self.call(method, path, operation, body)
        try:
            return parse(raw)
        except isapi.IsapiPayloadError as exc:
            raise TerminalAnswerError(self.config.id, str(exc)[:300]) from exc
