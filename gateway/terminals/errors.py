"""Errors of the terminal sync; each names the terminal."""

from __future__ import annotations

from gateway.errors import GatewayError


class TerminalError(GatewayError):
    """Root of the terminal sync's errors."""

    def __init__(self, terminal: str, reason: str) -> None:
        super().__init__(f"terminal {terminal}: {reason}")
        self.terminal = terminal
        self.reason = reason


class TerminalUnreachable(TerminalError, OSError):
    """No answer: connection refused, timed out, reset."""


class TerminalRefused(TerminalError):
    """The terminal answered and said no (a wrong password, memory full, a
    field it does not take); ``refused`` is True when retrying cannot help."""

    def __init__(self, terminal: str, reason: str, *, refused: bool, sub_status: str | None = None,
                 http_status: int | None = None) -> None:
        super().__init__(terminal, reason)
        self.refused = refused
        self.sub_status = sub_status
        self.http_status = http_status


class TerminalAnswerError(TerminalError):
    """The terminal answered something the ISAPI documents do not describe."""


class TerminalEventsNotStored(TerminalError):
    """Events fetched from the terminal did not reach the outbox (its disk):
    the catch-up does not move past them, and fetches them again."""
