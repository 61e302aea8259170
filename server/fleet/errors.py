"""The fleet slice's errors; one root."""

from __future__ import annotations

from server.errors import ServerError


class FleetError(ServerError):
    """Root of server/fleet's errors."""


class BrokerError(FleetError):
    """The broker refused or did not answer a provisioning command; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CaError(FleetError):
    """The gateway CA cannot be read or made, or a signing request is unusable."""
