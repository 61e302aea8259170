"""One RS-485 line of OSDP readers, driven by libosdp's ``ControlPanel``.

Threads: libosdp refreshes its C context on its own thread and calls our
event handler there *with its lock held*; the handler only queues. Our worker
thread turns queued events into callbacks and brings offline readers back, so
callbacks may call :meth:`OsdpLine.feedback` (which takes libosdp's lock).

libosdp 3.2.9 waits 300 s before it polls a reader that went offline again;
a reader plugged back in would stay dark that long. The worker disables and
re-enables such a reader after a short, growing delay instead.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from devices import wiegand
from devices.errors import PortError
from devices.osdp.errors import OsdpError
from devices.osdp.events import CardEvent, InputEvent, LineEvent, StatusEvent, TamperEvent, translate
from rentgate import wire

log = logging.getLogger(__name__)

CardCallback = Callable[[int, wire.Credential], None]
StatusCallback = Callable[[int, bool, "str | None"], None]
InputCallback = Callable[[int, int, bool], None]
TamperCallback = Callable[[int, bool], None]

SCBK_LEN = 16
_OUTPUT_TIMER_UNIT_MS = 100
_OUTPUT_TIMER_MAX = 255  # libosdp 3.2.9 passes the timer through a uint8


@dataclass(frozen=True, kw_only=True)
class ReaderSpec:
    """One reader (PD) on the line. ``scbk``: its secure channel base key
    (the channel is then enforced); ``install_mode``: accept a reader that
    still has the default key and give it ``scbk``."""

    address: int
    scbk: bytes | None = None
    install_mode: bool = False
    card_mode: wiegand.Mode = "standard"

    def __post_init__(self) -> None:
        if not 0 <= self.address <= 126:
            raise OsdpError("reader", f"address {self.address} out of range 0..126")
        if self.scbk is not None and len(self.scbk) != SCBK_LEN:
            raise OsdpError("reader", f"SCBK must be {SCBK_LEN} bytes, not {len(self.scbk)}", address=self.address)
        if self.install_mode and self.scbk is None:
            raise OsdpError("reader", "install mode needs the SCBK to install", address=self.address)


@dataclass(frozen=True, kw_only=True)
class LineStats:
    events: int
    dropped: int
    bad_cards: int
    online: dict[int, bool]


@dataclass
class _Reader:
    spec: ReaderSpec
    online: bool | None = None
    inputs: tuple[bool, ...] = ()
    tamper: bool | None = None
    # Capabilities as the reader declared them, read when it comes online.
    led: bool = False
    buzzer: bool = False
    outputs: int = 0
    revive_delay: float = 0.0
    revive_at: float | None = None
    disabling: bool = False


# How long stopping a line waits for each of libosdp's thread and our worker.
STOP_WAIT_S = 2.0


class OsdpLine:
    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 9600,
        channel_id: int,
        readers: Sequence[ReaderSpec],
        on_card: CardCallback,
        on_status: StatusCallback,
        on_input: InputCallback | None = None,
        on_tamper: TamperCallback | None = None,
        revive_s: float = 1.0,
        revive_max_s: float = 30.0,
        queue_max: int = 1000,
        name: str | None = None,
    ) -> None:
        self.name = name or f"osdp {url}"
        if channel_id < 1:
            # Channel id 0 makes libosdp treat every line as one shared line.
            raise OsdpError(self.name, "channel_id must be at least 1")
        addresses = [r.address for r in readers]
        if not addresses:
            raise OsdpError(self.name, "no readers")
        if len(set(addresses)) != len(addresses):
            raise OsdpError(self.name, f"reader addresses repeat: {addresses}")
        self.url = url
        self.baudrate = baudrate
        self.channel_id = channel_id
        self._readers = {r.address: _Reader(r) for r in readers}
        self._on_card = on_card
        self._on_status = on_status
        self._on_input = on_input
        self._on_tamper = on_tamper
        self._revive_s = revive_s
        self._revive_max_s = revive_max_s
        self._queue: queue.Queue[tuple[int, dict[str, object]]] = queue.Queue(maxsize=queue_max)
        self._stopping = threading.Event()
        self._cp: Any = None
        self._port: Any = None
        self._channel: Any = None
        self._worker: threading.Thread | None = None
        self._failure_reported = False
        self._events = 0
        self._dropped = 0
        self._bad_cards = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Open the port and start polling; raises :class:`OsdpError` (or
        :class:`PortError`) if the port or libosdp cannot be set up."""
        import osdp
        import serial

        from devices.osdp.channel import SerialChannel

        if self._worker is not None:
            raise OsdpError(self.name, "already started")
        try:
            self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortError(self.url, str(exc)) from exc
        self._channel = SerialChannel(self._port, self.channel_id)
        infos = [osdp.PDInfo(r.spec.address, self._channel, scbk=r.spec.scbk, flags=_flags(osdp, r.spec))
                 for r in self._readers.values()]
        try:
            self._cp = osdp.ControlPanel(infos, log_level=osdp.LogLevel.Warning, event_handler=self._from_libosdp)
        except Exception as exc:  # osdp_sys raises bare exceptions on bad setups
            self._port.close()
            raise OsdpError(self.name, f"libosdp refused the setup: {exc}") from exc
        self._stopping.clear()
        self._worker = threading.Thread(target=self._work, name=f"{self.name} worker", daemon=True)
        self._worker.start()
        _start_polling(self._cp, f"{self.name} libosdp")
        log.info("%s: polling readers %s on channel %d", self.name, sorted(self._readers), self.channel_id)

    def stop(self) -> None:
        """Stop polling and close the port; blocks up to a few seconds."""
        self._stopping.set()
        if self._cp is not None:
            if not _stop_polling(self._cp, STOP_WAIT_S):
                # Seen when the readers vanish while the gateway stops: libosdp's
                # thread blocks inside its own event callback and never returns.
                # ControlPanel.stop() would wait for it forever (the gateway
                # then hung until it was killed); the thread is a daemon, so it
                # ends with the process, and nothing of ours waits on it.
                log.warning("%s: libosdp's polling thread did not stop within %.0f s; leaving it behind",
                            self.name, STOP_WAIT_S)
            self._cp = None
        if self._worker is not None:
            self._worker.join(STOP_WAIT_S)
            self._worker = None
        if self._port is not None:
            self._port.close()
            self._port = None

    @property
    def failure(self) -> str | None:
        """Why the port stopped working, once it has; the line is then dead
        and must be stopped and started again."""
        channel = self._channel
        return channel.failure if channel is not None and channel.failed else None

    def is_online(self, address: int) -> bool:
        return self._reader(address).online is True

    def stats(self) -> LineStats:
        return LineStats(events=self._events, dropped=self._dropped, bad_cards=self._bad_cards,
                         online={a: r.online is True for a, r in self._readers.items()})

    # ------------------------------------------------------------------ commands

    def feedback(self, address: int, granted: bool) -> bool:
        """Green LED and one beep on grant, flashing red and three beeps on
        denial, each only if the reader declared it can. False if nothing
        was sent (reader offline or without LED and buzzer)."""
        import osdp

        reader = self._reader(address)
        if self._cp is None or reader.online is not True:
            return False
        sent = False
        if reader.led:
            color = osdp.CommandLEDColor.Green if granted else osdp.CommandLEDColor.Red
            sent |= self._submit(address, {
                "command": osdp.Command.LED, "reader": 0, "led_number": 0, "temporary": True, "control_code": 2,
                "on_color": color, "off_color": osdp.CommandLEDColor.Black,
                "on_count": 15 if granted else 2, "off_count": 0 if granted else 2, "timer_count": 15,
            })
        if reader.buzzer:
            sent |= self._submit(address, {
                "command": osdp.Command.Buzzer, "reader": 0, "control_code": 2,
                "on_count": 2 if granted else 1, "off_count": 0 if granted else 1, "rep_count": 1 if granted else 3,
            })
        return sent

    def pulse_output(self, address: int, output_no: int, ms: int) -> bool:
        """Switch an output (a lock relay) on for ``ms`` (in 100 ms steps, at
        most 25.5 s); False if the reader is offline."""
        import osdp

        reader = self._reader(address)
        ticks = math.ceil(ms / _OUTPUT_TIMER_UNIT_MS)
        if not 1 <= ticks <= _OUTPUT_TIMER_MAX:
            raise OsdpError(self.name, f"pulse of {ms} ms out of range 1..{_OUTPUT_TIMER_MAX * 100}", address=address)
        if self._cp is None or reader.online is not True:
            return False
        if output_no >= reader.outputs:
            raise OsdpError(self.name, f"output {output_no} not declared (it has {reader.outputs})", address=address)
        # Control code 5: on for the timer, then back to the permanent state.
        return self._submit(address, {"command": osdp.Command.Output, "output_no": output_no, "control_code": 5,
                                      "timer_count": ticks})

    def _submit(self, address: int, command: dict[str, object]) -> bool:
        cp = self._cp
        if cp is None:
            return False
        if threading.current_thread() is getattr(cp, "thread", None):
            # libosdp's lock is held on its thread: submitting would deadlock.
            raise OsdpError(self.name, "commands cannot be sent from libosdp's thread", address=address)
        ok = bool(cp.submit_command(address, command))
        if not ok:
            log.warning("%s: reader %d refused command %s", self.name, address, command.get("command"))
        return ok

    def _reader(self, address: int) -> _Reader:
        reader = self._readers.get(address)
        if reader is None:
            raise OsdpError(self.name, "no such reader on this line", address=address)
        return reader

    # ------------------------------------------------------------------ libosdp's thread

    def _from_libosdp(self, pd: int, event: dict[str, object]) -> int:
        # On libosdp's thread with its lock held: queue and return, nothing else.
        cp = self._cp
        if cp is None:
            return 0
        _drain(cp.event_queue[pd])  # the wrapper keeps a copy of every event nobody reads
        try:
            self._queue.put_nowait((cp.pd_addr[pd], event))
        except queue.Full:
            self._dropped += 1
        return 0

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                address, raw = self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
            else:
                self._events += 1
                mode = self._readers[address].spec.card_mode
                event = translate(address, raw, mode=mode)
                if event is not None:
                    self._guarded(self._handle, event)
            self._guarded(self._check_port)
            self._guarded(self._revive_due)

    def _guarded(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            # A callback's bug must not stop the line.
            log.exception("%s: handling an event failed", self.name)

    def _handle(self, event: LineEvent) -> None:
        reader = self._readers[event.address]
        if isinstance(event, CardEvent):
            if event.credential is None:
                self._bad_cards += 1
                log.warning("%s: reader %d: unreadable card: %s", self.name, event.address, event.error)
            else:
                self._on_card(event.address, event.credential)
        elif isinstance(event, StatusEvent):
            self._set_online(reader, event.online, None)
        elif isinstance(event, InputEvent):
            before, reader.inputs = reader.inputs, event.states
            if self._on_input is not None:
                for no, active in enumerate(event.states):
                    if no >= len(before) or before[no] != active:
                        self._on_input(event.address, no, active)
        elif isinstance(event, TamperEvent):
            if reader.tamper != event.tamper:
                reader.tamper = event.tamper
                if self._on_tamper is not None:
                    self._on_tamper(event.address, event.tamper)

    def _set_online(self, reader: _Reader, online: bool, detail: str | None) -> None:
        address = reader.spec.address
        if online:
            self._read_capabilities(reader)
            reader.revive_delay, reader.revive_at, reader.disabling = 0.0, None, False
        elif reader.revive_at is None and not reader.disabling and self.failure is None:
            reader.revive_delay = min(self._revive_max_s, max(self._revive_s, reader.revive_delay * 2))
            reader.revive_at = time.monotonic() + reader.revive_delay
        if reader.online != online:
            reader.online = online
            log.info("%s: reader %d %s", self.name, address, "online" if online else "offline")
            self._on_status(address, online, detail)

    def _read_capabilities(self, reader: _Reader) -> None:
        import osdp

        cp, address = self._cp, reader.spec.address
        if cp is None:
            return
        reader.led = cp.check_capability(address, osdp.Capability.LEDControl)[0] > 0
        reader.buzzer = cp.check_capability(address, osdp.Capability.AudibleControl)[0] > 0
        level, items = cp.check_capability(address, osdp.Capability.OutputControl)
        reader.outputs = items if level > 0 else 0

    def _check_port(self) -> None:
        failure = self.failure
        if failure is None or self._failure_reported:
            return
        self._failure_reported = True
        log.error("%s: the port failed: %s", self.name, failure)
        for reader in self._readers.values():
            reader.revive_at = None
            if reader.online is not False:
                reader.online = False
                self._on_status(reader.spec.address, False, f"port failed: {failure}")

    def _revive_due(self) -> None:
        cp, now = self._cp, time.monotonic()
        if cp is None:
            return
        for address, reader in self._readers.items():
            if reader.disabling:
                if not cp.is_pd_enabled(address):
                    reader.disabling = False
                    cp.enable_pd(address)
            elif reader.revive_at is not None and now >= reader.revive_at and reader.online is not True:
                reader.revive_at = None
                if cp.disable_pd(address):
                    reader.disabling = True


def _start_polling(cp: Any, name: str) -> None:
    """``ControlPanel.start()`` of libosdp 3.2.9 (pinned), but on a daemon
    thread: its own is not one, and a refresh thread stuck in C would keep the
    gateway process from ever exiting. The wrapper's ``refresh`` loop, its
    stop event and its lock are used as they are."""
    cp.event = threading.Event()
    cp.lock = threading.Lock()
    cp.thread = threading.Thread(name=name, target=cp.refresh, args=(cp.event, cp.lock, cp.ctx), daemon=True)
    cp.thread.start()


def _stop_polling(cp: Any, timeout: float) -> bool:
    """Ask libosdp's refresh loop to end and wait at most ``timeout`` seconds
    (``ControlPanel.stop()`` waits without end). True if it ended."""
    thread = getattr(cp, "thread", None)
    if thread is None:
        return True
    cp.event.set()
    thread.join(timeout)
    if thread.is_alive():
        return False
    cp.thread = None
    return True


def _flags(osdp: Any, spec: ReaderSpec) -> list[int]:
    flags = [osdp.LibFlag.EnableNotification]
    if spec.install_mode:
        flags.append(osdp.LibFlag.InstallMode)
    elif spec.scbk is not None:
        flags.append(osdp.LibFlag.EnforceSecure)
    return flags


def _drain(q: queue.Queue[object]) -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass
