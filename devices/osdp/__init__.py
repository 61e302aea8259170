"""OSDP (IEC 60839-11-5) readers on one RS-485 line, through libosdp 3.2.9's
``ControlPanel``, kept behind our own :class:`OsdpLine` so that libosdp's
threading rules and API changes stay in this package."""

from devices.osdp.errors import OsdpError
from devices.osdp.events import CardEvent, InputEvent, LineEvent, StatusEvent, TamperEvent, translate
from devices.osdp.line import LineStats, OsdpLine, ReaderSpec

__all__ = [
    "CardEvent", "InputEvent", "LineEvent", "LineStats", "OsdpError", "OsdpLine", "ReaderSpec", "StatusEvent",
    "TamperEvent", "translate",
]
