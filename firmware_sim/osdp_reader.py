"""Simulated OSDP readers: libosdp ``PeripheralDevice``s on one simulated
RS-485 line behind a pty, as the gateway sees a USB-RS485 adapter.

On a real bus every reader hears every byte and only one talks at a time;
:class:`SimOsdpLine` is that bus: it copies what the gateway writes to every
reader and serialises their replies. A reader can be unplugged (it hears and
says nothing) and plugged back in. libosdp's event queue never pushes back,
so :meth:`SimOsdpReader.present` paces presentations like a human would.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devices import wiegand
from firmware_sim.errors import SimError

log = logging.getLogger(__name__)

MIN_PRESENT_INTERVAL_S = 0.05
_INBOX_MAX = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class ReaderCaps:
    """What a simulated reader declares; the gateway must not send more."""

    led: bool = True
    buzzer: bool = True
    outputs: int = 1
    inputs: int = 1


@dataclass(frozen=True)
class ReceivedCommand:
    kind: str  # "led", "buzzer", "output", "keyset", "other"
    fields: dict[str, Any] = field(default_factory=dict)


class SimOsdpLine:
    """One pty, many readers. ``pts`` is the path the gateway opens."""

    def __init__(self, *, channel_id: int = 1) -> None:
        self.channel_id = channel_id
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.pts = os.ttyname(self._slave)
        self._write_lock = threading.Lock()
        self._readers: list[SimOsdpReader] = []
        self._stop = threading.Event()
        self._bus = threading.Thread(target=self._fan_out, name=f"osdp-sim-bus {self.pts}", daemon=True)
        self._bus.start()

    def add_reader(self, address: int, *, caps: ReaderCaps | None = None, scbk: bytes | None = None,
                   install_mode: bool = False) -> SimOsdpReader:
        reader = SimOsdpReader(self, address, caps=caps or ReaderCaps(), scbk=scbk, install_mode=install_mode)
        self._readers.append(reader)
        reader.start()
        return reader

    def inject(self, data: bytes) -> None:
        """Bytes from nowhere on the line (noise, a miswired device)."""
        self._write(data)

    def close(self) -> None:
        self._stop.set()
        for reader in self._readers:
            reader.stop()
        self._bus.join(2)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> SimOsdpLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, data: bytes) -> int:
        with self._write_lock:
            try:
                os.write(self._master, data)
            except (BlockingIOError, OSError):
                pass  # nobody reading: lost, as on an unterminated bus
        return len(data)

    def _fan_out(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(self._master, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return  # closed
            for reader in self._readers:
                reader.hear(data)


class SimOsdpReader:
    """One reader on a :class:`SimOsdpLine` (create it with ``add_reader``)."""

    def __init__(self, line: SimOsdpLine, address: int, *, caps: ReaderCaps, scbk: bytes | None,
                 install_mode: bool) -> None:
        self.line = line
        self.address = address
        self.caps = caps
        self.scbk = scbk
        self.install_mode = install_mode
        self._inbox = bytearray()
        self._lock = threading.Lock()
        self._plugged = True
        self._last_present = 0.0
        self._commands: list[ReceivedCommand] = []
        self._listeners: list[Callable[[ReceivedCommand], None]] = []
        self._pd: Any = None

    # ------------------------------------------------------------------ bus side

    def hear(self, data: bytes) -> None:
        with self._lock:
            if self._plugged and len(self._inbox) + len(data) <= _INBOX_MAX:
                self._inbox += data

    def _read(self, max_bytes: int) -> bytes:
        with self._lock:
            chunk = bytes(self._inbox[:max_bytes])
            del self._inbox[:max_bytes]
            return chunk

    def _send(self, data: bytes) -> int:
        with self._lock:
            plugged = self._plugged
        return self.line._write(data) if plugged else len(data)

    def _flush(self) -> None:
        with self._lock:
            self._inbox.clear()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        import osdp

        reader = self

        class _Channel(osdp.Channel):  # type: ignore[misc]  # libosdp ships no type hints
            def __init__(self) -> None:
                super().__init__()
                self.id = reader.line.channel_id

            def read(self, max_bytes: int) -> bytes:
                return reader._read(max_bytes)

            def write(self, buf: bytes) -> int:
                return reader._send(bytes(buf))

            def flush(self) -> None:
                reader._flush()

        caps = [(osdp.Capability.CardDataFormat, 1, 1), (osdp.Capability.CommunicationSecurity, 1, 1)]
        if self.caps.led:
            caps.append((osdp.Capability.LEDControl, 1, 1))
        if self.caps.buzzer:
            caps.append((osdp.Capability.AudibleControl, 1, 1))
        if self.caps.outputs:
            caps.append((osdp.Capability.OutputControl, 1, self.caps.outputs))
        if self.caps.inputs:
            caps.append((osdp.Capability.ContactStatusMonitoring, 1, self.caps.inputs))
        flags = [osdp.LibFlag.InstallMode] if self.install_mode else []
        info = osdp.PDInfo(self.address, _Channel(), scbk=self.scbk, flags=flags, name=f"sim-pd-{self.address}")
        self._pd = osdp.PeripheralDevice(info, osdp.PDCapabilities(caps), log_level=osdp.LogLevel.Warning,
                                         command_handler=self._on_command)
        self._pd.start()

    def stop(self) -> None:
        if self._pd is not None:
            try:
                self._pd.stop()
            except RuntimeError:
                pass
            self._pd = None

    def unplug(self) -> None:
        """Stop hearing and answering, as a cut cable would."""
        with self._lock:
            self._plugged = False
            self._inbox.clear()

    def replug(self) -> None:
        with self._lock:
            self._plugged = True

    @property
    def plugged(self) -> bool:
        with self._lock:
            return self._plugged

    def add_command_listener(self, listener: Callable[[ReceivedCommand], None]) -> None:
        """Also hand every command received from now on to ``listener``. It
        runs on libosdp's thread with its lock held: it must only record (not
        call back into this reader, e.g. :meth:`set_inputs`)."""
        with self._lock:
            self._listeners.append(listener)

    @property
    def online(self) -> bool:
        return self._pd is not None and bool(self._pd.is_online())

    @property
    def secure(self) -> bool:
        return self._pd is not None and bool(self._pd.is_sc_active())

    # ------------------------------------------------------------------ the reader's user

    def present(self, facility: int, card: int) -> None:
        """A Wiegand-26 card at the reader."""
        bits = wiegand.encode(facility, card, 26)
        self.present_bits(bits, 26)

    def present_bits(self, value: int, bits: int) -> None:
        """Any frame, parity right or wrong (for bad-input tests)."""
        import osdp

        if self._pd is None:
            raise SimError(f"OSDP reader {self.address} not started")
        wait = self._last_present + MIN_PRESENT_INTERVAL_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # pacing, not synchronisation: libosdp's queue has no bound
        self._last_present = time.monotonic()
        self._pd.submit_event({"event": osdp.Event.CardRead, "reader_no": 0, "format": osdp.CardFormat.Wiegand,
                               "direction": 0, "length": bits, "data": wiegand.pack(value, bits)})

    def set_inputs(self, *active: bool) -> None:
        """Report input states (door contact first)."""
        import osdp

        if self._pd is None:
            raise SimError(f"OSDP reader {self.address} not started")
        self._pd.submit_event({"event": osdp.Event.Status, "type": osdp.StatusReportType.Input,
                               "report": bytes(int(a) for a in active)})

    def commands(self, kind: str | None = None) -> list[ReceivedCommand]:
        with self._lock:
            return [c for c in self._commands if kind is None or c.kind == kind]

    def _on_command(self, command: dict[str, Any]) -> tuple[int, None]:
        # On libosdp's PD thread with its lock held: record and return.
        import osdp

        pd = self._pd
        if pd is not None:
            _drain(pd.command_queue)  # the wrapper's copy of every command
        kinds = {osdp.Command.LED: "led", osdp.Command.Buzzer: "buzzer", osdp.Command.Output: "output",
                 osdp.Command.Keyset: "keyset"}
        kind = kinds.get(command.get("command"), "other")
        if kind == "keyset":
            # A reader in install mode must keep the key it was given.
            self.scbk = bytes(command.get("data", b""))
        received = ReceivedCommand(kind, dict(command))
        with self._lock:
            self._commands.append(received)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(received)
        return 0, None


def _drain(q: Any) -> None:
    import queue

    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass
