"""A libosdp ``Channel`` over a pyserial port."""

from __future__ import annotations

import logging
import threading

import serial
from osdp import Channel

log = logging.getLogger(__name__)


class SerialChannel(Channel):  # type: ignore[misc]  # libosdp ships no type hints
    """Reads never block (the port is opened with ``timeout=0``): libosdp
    polls from its refresh thread while holding its lock. A failing port is
    remembered in :attr:`failure` instead of raising into C code."""

    def __init__(self, port: serial.Serial, channel_id: int) -> None:
        super().__init__()
        self.id = channel_id
        self._port = port
        self._failed = threading.Event()
        self.failure: str | None = None

    @property
    def failed(self) -> bool:
        return self._failed.is_set()

    def read(self, max_bytes: int) -> bytes:
        if self._failed.is_set():
            return b""
        try:
            return bytes(self._port.read(max_bytes))
        except (serial.SerialException, OSError) as exc:
            self._fail(exc)
            return b""

    def write(self, buf: bytes) -> int:
        if self._failed.is_set():
            return len(buf)  # dropped, as a cut cable would
        try:
            written = self._port.write(buf)
        except (serial.SerialException, OSError) as exc:
            self._fail(exc)
            return len(buf)
        return len(buf) if written is None else int(written)

    def flush(self) -> None:
        # libosdp's flush means "discard what is buffered", not "wait until sent".
        if self._failed.is_set():
            return
        try:
            self._port.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if not self._failed.is_set():
            self.failure = str(exc)
            self._failed.set()
