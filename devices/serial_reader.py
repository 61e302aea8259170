"""The serial transport: a thread that keeps a port open, feeds a parser and
hands debounced frames to the caller.

Ports are opened with ``serial.serial_for_url`` so a pty path, ``socket://``
(a serial server) or ``spy://`` (hex dumps for debugging) all work as in
production. The parser is pluggable: any line that prints frames on a UART
(EM4100 today, Wiegand converter boards later) reuses this transport.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import serial

from devices.debounce import Debouncer
from devices.em4100 import Em4100Parser
from devices.errors import PortError

log = logging.getLogger(__name__)

_READ_TIMEOUT_S = 0.2  # also bounds how long stop() waits for the thread


class Frame(Protocol):
    @property
    def card(self) -> str: ...

    @property
    def format(self) -> str: ...


class FrameParser(Protocol):
    def feed(self, data: bytes) -> Sequence[Frame]: ...

    @property
    def bad_frames(self) -> int: ...


StatusCallback = Callable[[bool, "str | None"], None]


@dataclass(frozen=True, kw_only=True)
class ReaderStats:
    online: bool
    frames: int  # handed to on_frame
    debounced: int  # repeats suppressed
    bad_frames: int  # counted by the parsers over every connection
    reopens: int  # successful opens after the first
    open_failures: int


class SerialFrameReader:
    """Reads frames from one port in a daemon thread until :meth:`stop`.

    ``on_frame`` and ``on_status`` run on the reader thread: hand work over and
    return quickly. ``on_status(True, None)`` is called when the port opens,
    ``on_status(False, reason)`` when it cannot be opened or stops working; both
    only on a change. A lost port is reopened with jittered, capped backoff.
    """

    def __init__(
        self,
        url: str,
        *,
        on_frame: Callable[[Frame], None],
        on_status: StatusCallback | None = None,
        baudrate: int = 9600,
        parser_factory: Callable[[], FrameParser] = Em4100Parser,
        debounce_s: float = 0.8,
        reopen_backoff_min_s: float = 0.2,
        reopen_backoff_max_s: float = 10.0,
        name: str | None = None,
    ) -> None:
        self.url = url
        self._on_frame = on_frame
        self._on_status = on_status
        self._baudrate = baudrate
        self._parser_factory = parser_factory
        self._debouncer = Debouncer(debounce_s)
        self._backoff_min_s = reopen_backoff_min_s
        self._backoff_max_s = max(reopen_backoff_max_s, reopen_backoff_min_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name or f"serial-reader {url}", daemon=True)
        self._online: bool | None = None
        self._frames = 0
        self._debounced = 0
        self._bad_frames_closed = 0  # from parsers of earlier connections
        self._parser: FrameParser | None = None
        self._opens = 0
        self._open_failures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("serial reader %s did not stop within %.1f s", self.url, timeout)

    def __enter__(self) -> SerialFrameReader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> ReaderStats:
        parser = self._parser
        return ReaderStats(
            online=bool(self._online),
            frames=self._frames,
            debounced=self._debounced,
            bad_frames=self._bad_frames_closed + (parser.bad_frames if parser else 0),
            reopens=max(0, self._opens - 1),
            open_failures=self._open_failures,
        )

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                port = self._open()
            except PortError as exc:
                self._open_failures += 1
                self._set_online(False, exc.reason)
                failures += 1
                self._stop.wait(self._backoff(failures))
                continue
            failures = 0
            self._opens += 1
            if self._opens > 1:
                log.info("serial port %s reopened", self.url)
            self._set_online(True, None)
            try:
                self._pump(port)
            except PortError as exc:
                log.warning("serial port %s lost: %s", self.url, exc.reason)
                self._set_online(False, exc.reason)
                # A port that flaps should not spin: wait at least the minimum.
                self._stop.wait(self._backoff(1))
            finally:
                _close_quietly(port)
        self._set_online(False, "stopped")

    def _open(self) -> serial.SerialBase:
        try:
            return serial.serial_for_url(self.url, baudrate=self._baudrate, timeout=_READ_TIMEOUT_S)
        except (OSError, ValueError) as exc:
            raise PortError(self.url, f"cannot open: {exc}") from exc

    def _pump(self, port: serial.SerialBase) -> None:
        parser = self._parser_factory()
        self._retire_parser(parser)
        while not self._stop.is_set():
            try:
                # Block (up to the timeout) for one byte, then take what else is there.
                data = port.read(1)
                if data:
                    data += port.read_all() or b""
            except (OSError, ValueError) as exc:
                raise PortError(self.url, f"read failed: {exc}") from exc
            if data:
                for frame in parser.feed(data):
                    self._deliver(frame)

    def _retire_parser(self, new: FrameParser) -> None:
        # Bytes of a half frame from the old connection must not join new ones.
        if self._parser is not None:
            self._bad_frames_closed += self._parser.bad_frames
        self._parser = new

    def _deliver(self, frame: Frame) -> None:
        if not self._debouncer.accept(f"{frame.format}:{frame.card}", time.monotonic()):
            self._debounced += 1
            return
        self._frames += 1
        try:
            self._on_frame(frame)
        except Exception:
            log.exception("on_frame failed for a %s read on %s", frame.format, self.url)

    def _set_online(self, online: bool, reason: str | None) -> None:
        if self._online is online:
            return
        self._online = online
        if online:
            log.info("serial port %s online", self.url)
        elif reason != "stopped":
            log.warning("serial port %s offline: %s", self.url, reason)
        if self._on_status is None:
            return
        try:
            self._on_status(online, reason)
        except Exception:
            log.exception("on_status failed for %s", self.url)

    def _backoff(self, failures: int) -> float:
        capped = min(self._backoff_max_s, self._backoff_min_s * 2 ** min(failures - 1, 16))
        return random.uniform(capped / 2, capped)


def _close_quietly(port: serial.SerialBase) -> None:
    try:
        port.close()
    except (OSError, ValueError) as exc:
        log.debug("closing serial port failed: %s", exc)
