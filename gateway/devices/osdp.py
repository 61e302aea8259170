"""OSDP readers on one RS-485 line (any pyserial URL): each reader reports
card reads and online/offline under its own device id and door; the line's
own id reports whether its port is open."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.devices.base import DeviceConfigBase, DeviceRouter, EventSink, register
from rentgate import wire

if TYPE_CHECKING:
    from devices.osdp import OsdpLine

log = logging.getLogger(__name__)

_REOPEN_MAX_S = 30.0


class OsdpReaderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: wire.DeviceId
    door: wire.DeviceId | None = None
    address: int = Field(ge=0, le=126)
    # 32 hex digits; with it the secure channel is required.
    scbk: str | None = None
    # Give a factory-fresh reader (default key) the scbk above.
    install_mode: bool = False
    # "raw": a 34-bit reader that puts a 32-bit UID where H10306 has fields.
    card_mode: Literal["standard", "raw"] = "standard"
    # The reader's output wired to the door's lock relay, pulsed on a grant;
    # None: this reader opens nothing (an exit reader on a free-exit door).
    lock_output: int | None = Field(default=0, ge=0, le=255)
    # The reader's input wired to the door contact (active = open); None: none.
    contact_input: int | None = Field(default=0, ge=0, le=255)

    @field_validator("scbk")
    @classmethod
    def _scbk(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            key = bytes.fromhex(value)
        except ValueError:
            raise ValueError("must be hex digits") from None
        if len(key) != 16:
            raise ValueError(f"must be 16 bytes (32 hex digits), not {len(key)}")
        return value

    @model_validator(mode="after")
    def _install_needs_key(self) -> OsdpReaderConfig:
        if self.install_mode and self.scbk is None:
            raise ValueError("install_mode needs the scbk to install")
        return self


class OsdpConfig(DeviceConfigBase):
    type: Literal["osdp"]
    port: str = Field(min_length=1)
    baudrate: int = Field(default=9600, gt=0)
    # Non-zero and different per line: libosdp treats equal ids as one shared line.
    channel_id: int = Field(default=1, ge=1, le=2**31 - 1)
    readers: list[OsdpReaderConfig] = Field(min_length=1, max_length=126)

    @field_validator("readers")
    @classmethod
    def _unique(cls, value: list[OsdpReaderConfig]) -> list[OsdpReaderConfig]:
        for what in ("address", "id"):
            seen: set[object] = set()
            for reader in value:
                key = getattr(reader, what)
                if key in seen:
                    raise ValueError(f"reader {what} {key!r} appears twice")
                seen.add(key)
        return value


class OsdpAdapter:
    def __init__(self, config: OsdpConfig, sink: EventSink) -> None:
        self.config = config
        self._sink = sink
        self._readers = {r.address: r for r in config.readers}
        self._sinks = {r.address: _reader_sink(sink, r, config.door) for r in config.readers}
        self.line: OsdpLine | None = None

    async def run(self) -> None:
        delay = 1.0
        while True:
            line = self._make_line()
            try:
                await asyncio.to_thread(line.start)
            except Exception as exc:  # PortError, OsdpError: logged, retried
                log.warning("osdp %s: cannot start the line: %s; retrying in %.0f s", self.config.id, exc, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(_REOPEN_MAX_S, delay * 2)
                continue
            self.line = line
            self._sink.device_status(True, f"port {self.config.port} open")
            try:
                while line.failure is None:
                    await asyncio.sleep(1)
                failure = line.failure
                self._sink.device_status(False, f"port failed: {failure}")
                delay = 1.0
            finally:
                self.line = None
                # Stopping joins libosdp's thread: not on the loop.
                await asyncio.to_thread(line.stop)

    def feedback(self, reader_id: str, granted: bool) -> bool:
        """LED and buzzer on the reader with this device id (if it can)."""
        line, address = self.line, self._address(reader_id)
        return line is not None and address is not None and line.feedback(address, granted)

    def pulse_output(self, reader_id: str, output_no: int, ms: int) -> bool:
        line, address = self.line, self._address(reader_id)
        return line is not None and address is not None and line.pulse_output(address, output_no, ms)

    def _address(self, reader_id: str) -> int | None:
        return next((a for a, r in self._readers.items() if r.id == reader_id), None)

    def _make_line(self) -> OsdpLine:
        from devices.osdp import OsdpLine, ReaderSpec

        specs = [ReaderSpec(address=r.address, scbk=bytes.fromhex(r.scbk) if r.scbk else None,
                            install_mode=r.install_mode, card_mode=r.card_mode) for r in self.config.readers]
        return OsdpLine(self.config.port, baudrate=self.config.baudrate, channel_id=self.config.channel_id,
                        readers=specs, on_card=self._on_card, on_status=self._on_status,
                        on_input=self._on_input, on_tamper=self._on_tamper, name=f"osdp {self.config.id}")

    def _on_card(self, address: int, credential: wire.Credential) -> None:
        self._sinks[address].card_read(credential, lambda granted, unlock_s: self._respond(address, granted, unlock_s))

    def _respond(self, address: int, granted: bool, unlock_s: float) -> None:
        """On the gateway's loop, after the decision is on disk: LED and beep,
        and on a grant the lock relay for the unlock time."""
        line, reader = self.line, self._readers[address]
        if line is None:
            log.warning("osdp %s: reader %s: line down, cannot signal the decision", self.config.id, reader.id)
            return
        line.feedback(address, granted)
        if granted and reader.lock_output is not None:
            # libosdp 3.2.9 carries the timer in one byte of 100 ms units.
            line.pulse_output(address, reader.lock_output, min(25_500, int(unlock_s * 1000)))

    def _on_input(self, address: int, input_no: int, active: bool) -> None:
        if input_no == self._readers[address].contact_input:
            self._sinks[address].door_contact(active)

    def _on_tamper(self, address: int, tamper: bool) -> None:
        # An alarm, not an outage: the reader is still online and reading.
        self._sinks[address].device_status(True, "tamper alarm: casing opened" if tamper else "tamper alarm cleared")

    def _on_status(self, address: int, online: bool, detail: str | None) -> None:
        self._sinks[address].device_status(online, detail)


def _reader_sink(sink: EventSink, reader: OsdpReaderConfig, line_door: str | None) -> EventSink:
    if isinstance(sink, DeviceRouter):
        return sink.for_device(reader.id, reader.door or line_door)
    # A sink that cannot route: every reader reports as the line.
    return sink


register("osdp", OsdpConfig, OsdpAdapter)
