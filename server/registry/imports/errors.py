"""What can go wrong with an import file as a whole, as opposed to one row."""

from __future__ import annotations

from server.errors import ServerError


class UnusableInput(ServerError):
    """The file cannot be imported at all (unknown format, unreadable, missing
    required columns): the CLI exits 2 and names the problem."""
