"""Errors raised by the simulator."""

from __future__ import annotations


class SimError(Exception):
    """Root of every error raised by :mod:`firmware_sim`."""


class SimConfigError(SimError, ValueError):
    """A simulator configuration file cannot be used; ``where`` names the key or file."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason
