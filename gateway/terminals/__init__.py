"""Terminals that decide at the door themselves (Hikvision DS-K1T): the
gateway keeps their own user and card lists equal to its signed allowlist,
and catches up on the events they kept while it could not hear them
(docs/terminal-sync.md)."""

from gateway.terminals.config import TerminalSyncConfig
from gateway.terminals.errors import TerminalError, TerminalRefused, TerminalUnreachable
from gateway.terminals.sync import TerminalHealth, TerminalSync, supervise

__all__ = [
    "TerminalError",
    "TerminalHealth",
    "TerminalRefused",
    "TerminalSync",
    "TerminalSyncConfig",
    "TerminalUnreachable",
    "supervise",
]
