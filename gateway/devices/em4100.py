"""EM4100 / RDM6300 125 kHz readers on a serial port (any pyserial URL)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from gateway.devices.base import DeviceConfigBase, EventSink, register
from rentgate import wire

if TYPE_CHECKING:
    from devices.serial_reader import Frame

log = logging.getLogger(__name__)


class Em4100Config(DeviceConfigBase):
    type: Literal["em4100"]
    port: str = Field(min_length=1)
    baudrate: int = Field(default=9600, gt=0)
    debounce_ms: int = Field(default=800, ge=0)
    # How often a growing count of bad frames (line noise, a failing reader)
    # is reported as a device_status event; never more often than this.
    noise_report_s: float = Field(default=60, gt=0)


class Em4100Adapter:
    def __init__(self, config: Em4100Config, sink: EventSink) -> None:
        self.config = config
        self._sink = sink

    async def run(self) -> None:
        # Imported here so that checking a config does not load pyserial.
        from devices.em4100 import Em4100Parser
        from devices.serial_reader import SerialFrameReader

        reader = SerialFrameReader(
            self.config.port,
            baudrate=self.config.baudrate,
            parser_factory=Em4100Parser,
            on_frame=self._on_frame,
            on_status=self._on_status,
            debounce_s=self.config.debounce_ms / 1000,
            name=f"em4100 {self.config.id}",
        )
        reader.start()
        reported = 0
        try:
            while True:
                await asyncio.sleep(self.config.noise_report_s)
                stats = reader.stats()
                if stats.bad_frames != reported:
                    reported = stats.bad_frames
                    self._sink.device_status(stats.online, "bad frames on the serial line", bad_frames=reported)
        finally:
            # Joining the thread blocks for up to a read timeout: not on the loop.
            await asyncio.to_thread(reader.stop)

    def _on_frame(self, frame: Frame) -> None:
        self._sink.card_read(wire.Credential(format="em4100", value=frame.card))

    def _on_status(self, online: bool, detail: str | None) -> None:
        self._sink.device_status(online, detail)


register("em4100", Em4100Config, Em4100Adapter)
