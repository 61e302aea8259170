"""Errors of the access package."""

from __future__ import annotations

from gateway.errors import GatewayError


class AccessError(GatewayError):
    """Root of the access package's errors."""


class AllowlistStoreError(AccessError):
    """The allowlist file cannot be opened or written; ``path`` names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"allowlist {path}: {reason}")
        self.path = path
        self.reason = reason
