"""Hikvision terminals read through their alert stream: the gateway holds
``GET /ISAPI/Event/notification/alertStream`` open (digest authentication) and
reads the endless ``multipart/mixed`` answer, one ``EventNotificationAlert``
per part, heartbeats every few seconds.

For terminals that cannot push to the gateway (firmware without "HTTP
listening", a gateway behind NAT from the terminal's side) or whose installer
left push off. Reads and door events go to the sink as from the push adapter,
deduplicated the same way (:class:`~gateway.devices.hikvision.TerminalDelivery`).
Silence longer than ``silence_s`` (no heartbeat) counts as a dead stream:
reconnect with capped, jittered backoff. Configure a terminal either here or
under ``hikvision_isapi`` (push), not both: the two adapters do not share
their memory of serials.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from gateway.devices.base import DeviceConfigBase, EventSink, register
from gateway.devices.hikvision import PushStats, TerminalDelivery
from gateway.errors import GatewayError

if TYPE_CHECKING:
    import aiohttp

    from devices.hikvision_stream import StreamItem

log = logging.getLogger(__name__)


class HikvisionStreamConfig(DeviceConfigBase):
    type: Literal["hikvision_stream"]
    # http(s)://host[:port] of the terminal's web interface.
    url: str
    path: str = Field(default="/ISAPI/Event/notification/alertStream", pattern=r"^/")
    username: str = Field(default="admin", min_length=1, max_length=32)
    # The password, from a file (mode 600) or an environment variable named
    # RENTGATE_...; never in the config, never logged. The prefix keeps a
    # configuration (devices may be set remotely) from sending the digest of
    # some other secret of the gateway's environment to a host it names.
    password_file: Path | None = None
    password_env: str | None = Field(default=None, pattern=r"^RENTGATE_SECRET_[A-Z0-9_]{1,48}$")
    # Heartbeats come every few seconds; this long without a byte is a dead stream.
    silence_s: float = Field(default=30, gt=0, le=600)
    connect_timeout_s: float = Field(default=10, gt=0, le=120)
    backoff_min_s: float = Field(default=1, gt=0)
    backoff_max_s: float = Field(default=60, gt=0, le=3600)
    max_part_kb: int = Field(default=1024, ge=4)
    max_picture_kb: int = Field(default=8192, ge=16)
    noise_report_s: float = Field(default=60, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise ValueError("must be http(s)://host[:port], without a login (use username and password_file)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_password_source(self) -> HikvisionStreamConfig:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        return self


class StreamProblem(GatewayError):
    """The terminal answered, but not with an alert stream we can read."""


@dataclass
class StreamStats(PushStats):
    connects: int = 0
    pictures_dropped: int = 0


class HikvisionStreamAdapter:
    def __init__(self, config: HikvisionStreamConfig, sink: EventSink) -> None:
        self.config = config
        self.stats = StreamStats()
        self.connected = asyncio.Event()
        self._sink = sink
        self._delivery = TerminalDelivery(self.stats)
        self._reported_rejected = 0
        self._last_report = 0.0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow(), name=f"hikvision-stream-{self.config.id}")

    async def _follow(self) -> None:
        import aiohttp

        failures = 0
        while True:
            delivered = self.stats.reads + self.stats.door_events + self.stats.other_events
            try:
                await self._read_stream()
                reason = "the terminal ended the alert stream"
            except (aiohttp.ClientError, OSError, TimeoutError, StreamProblem) as exc:
                reason = _describe(exc, self.config.silence_s)
            self.connected.clear()
            # A stream that carried events was healthy: start the backoff over.
            progressed = self.stats.reads + self.stats.door_events + self.stats.other_events > delivered
            failures = 0 if progressed else failures + 1
            delay = self._backoff(failures)
            log.warning("hikvision stream %s: %s; reconnecting in %.1f s", self.config.id, reason, delay)
            self._sink.device_status(False, reason)
            await asyncio.sleep(delay)

    def _backoff(self, failures: int) -> float:
        ceiling = min(self.config.backoff_max_s, self.config.backoff_min_s * 2 ** min(failures, 16))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not secrecy

    async def _read_stream(self) -> None:
        import aiohttp

        from devices.hikvision import VendorPayloadError
        from devices.hikvision_stream import AlertStream, boundary_of

        timeout = aiohttp.ClientTimeout(total=None, connect=self.config.connect_timeout_s,
                                        sock_read=self.config.silence_s)
        async with aiohttp.ClientSession(timeout=timeout, middlewares=self._auth()) as session, \
                session.get(self.config.url + self.config.path, headers={"Accept": "multipart/mixed"}) as response:
            _check_answer(response)
            try:
                boundary = boundary_of(response.headers.get("Content-Type", ""))
            except VendorPayloadError as exc:
                raise StreamProblem(f"not an alert stream: {exc.reason}") from exc
            stream = AlertStream(boundary, max_part=self.config.max_part_kb * 1024,
                                 max_picture=self.config.max_picture_kb * 1024)
            self.stats.connects += 1
            self.connected.set()
            self._sink.device_status(True, "alert stream open")
            log.info("hikvision stream %s: reading %s", self.config.id, self.config.url + self.config.path)
            async for chunk in response.content.iter_any():
                self._take(stream.feed(chunk))
            self._take(stream.close())
            if stream.reader.truncated:
                self._reject("the stream ended inside a part")

    def _auth(self) -> tuple[aiohttp.ClientMiddlewareType, ...]:
        from aiohttp import DigestAuthMiddleware

        password = self._password()
        if password is None:
            return ()
        return (DigestAuthMiddleware(self.config.username, password),)

    def _password(self) -> str | None:
        # Read at each connect, so a changed password needs no restart.
        if self.config.password_file is not None:
            try:
                return self.config.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise StreamProblem(f"cannot read password_file: {exc.strerror}") from exc
        if self.config.password_env is not None:
            value = os.environ.get(self.config.password_env)
            if value is None:
                raise StreamProblem(f"environment variable {self.config.password_env} is not set")
            return value
        return None

    def _take(self, items: list[StreamItem]) -> None:
        for item in items:
            if item.dropped == "picture":
                self.stats.pictures_dropped += 1
            if item.error is not None:
                self._reject(item.error.reason)
            for event in item.events:
                self._delivery.deliver(event, self._sink)

    def _reject(self, reason: str) -> None:
        self.stats.rejected += 1
        log.warning("hikvision stream %s: rejected a part: %s", self.config.id, reason)
        now = asyncio.get_running_loop().time()
        if now - self._last_report >= self.config.noise_report_s or self._reported_rejected == 0:
            self._last_report, self._reported_rejected = now, self.stats.rejected
            self._sink.device_status(True, "rejected alert stream parts", bad_frames=self.stats.rejected)


def _check_answer(response: aiohttp.ClientResponse) -> None:
    if response.status == 401:
        raise StreamProblem("the terminal refused the login (username or password)")
    if response.status != 200:
        raise StreamProblem(f"the terminal answered HTTP {response.status}")
    media = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if not media.startswith("multipart/"):
        raise StreamProblem(f"the terminal answered {media or 'no content type'}, not a multipart stream")


def _describe(exc: BaseException, silence_s: float) -> str:
    from aiohttp import SocketTimeoutError

    if isinstance(exc, SocketTimeoutError):
        return f"no data for {silence_s:g} s (no heartbeat): the stream is taken for dead"
    if isinstance(exc, TimeoutError):
        return "the terminal did not answer in time"
    if isinstance(exc, StreamProblem):
        return str(exc)
    return f"connection failed: {type(exc).__name__}: {exc}"


register("hikvision_stream", HikvisionStreamConfig, HikvisionStreamAdapter)
