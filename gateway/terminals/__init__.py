"""Terminals that decide at the door themselves (Hikvision DS-K1T): the
gateway keeps their own user and card lists equal to its signed allowlist,
and catches up on the events they kept while it could not hear them
(docs/terminal-sync.md).

The names below load on first use: the gateway's settings import this
package's config for every gateway, and one without such terminals loads no
HTTP client."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {"TerminalSyncConfig": "config", "TerminalError": "errors", "TerminalRefused": "errors",
         "TerminalUnreachable": "errors", "TerminalHealth": "sync", "TerminalSync": "sync", "supervise": "sync"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
