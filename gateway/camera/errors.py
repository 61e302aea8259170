"""Errors of the gateway's camera package."""

from __future__ import annotations

from gateway.errors import GatewayError


class CameraGatewayError(GatewayError):
    """Root of the gateway camera package's errors."""


class SpoolError(CameraGatewayError):
    """A snapshot cannot be kept: a picture that is not a JPEG or too large,
    or a spool folder that cannot be written; ``reason`` says which."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"snapshot spool {path}: {reason}")
        self.path = path
        self.reason = reason
