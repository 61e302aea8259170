from __future__ import annotations

from devices.errors import DeviceError


class OsdpError(DeviceError):
    """An OSDP line cannot be used as asked; names the line and, where it
    applies, the reader address."""

    def __init__(self, line: str, reason: str, *, address: int | None = None) -> None:
        where = line if address is None else f"{line} reader {address}"
        super().__init__(f"{where}: {reason}")
        self.line = line
        self.reason = reason
        self.address = address
