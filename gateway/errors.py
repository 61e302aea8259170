"""The gateway's errors; everything it raises on purpose derives from GatewayError."""

from __future__ import annotations

from dataclasses import dataclass


class GatewayError(Exception):
    """Root of the gateway's errors."""


@dataclass(frozen=True)
class ConfigProblem:
    path: str  # dotted key path, e.g. ``devices.0.port``
    message: str
    line: int | None = None

    def __str__(self) -> str:
        from rentgate.lang import tr

        where = tr(f"{self.path}（第 {self.line} 行）", f"{self.path} (line {self.line})") if self.line else self.path
        return f"{where}: {self.message}"


class ConfigError(GatewayError):
    """A configuration file that cannot be used; ``problems`` name each bad key."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(str(p) for p in problems))


class OutboxError(GatewayError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"outbox {path}: {reason}")
        self.path = path
        self.reason = reason


class OutboxLockedError(OutboxError):
    """Another process holds this outbox: two writers would reuse sequence numbers."""


class OutboxClosedError(OutboxError):
    pass
