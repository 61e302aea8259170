"""The server's exception root."""

from __future__ import annotations


class ServerError(Exception):
    """Root of every error the server raises on purpose."""


class SettingsError(ServerError, ValueError):
    """A setting (environment variable or flag) that cannot be used."""

