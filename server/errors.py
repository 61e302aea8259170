"""The server's exception root."""

from __future__ import annotations


class ServerError(Exception):
    """Root of every error the server raises on purpose."""


class SettingsError(ServerError, ValueError):
    """A setting (environment variable or flag) that cannot be used."""


class DatabaseNotReady(ServerError):
    """The database schema is not at the revision this code needs."""

    def __init__(self, url: str, current: str | None, head: str) -> None:
        super().__init__(
            f"database {url} is at revision {current or '<empty>'}, this server needs {head}; "
            "run `rentgate db upgrade` or start with --upgrade"
        )
        self.current = current
        self.head = head
