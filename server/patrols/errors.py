"""The patrols package's exception root."""

from __future__ import annotations

from server.errors import ServerError


class PatrolError(ServerError):
    """Root of the patrols package's errors."""


class PatrolInvalid(PatrolError):
    """A field of a patrol that cannot be used (HTTP 400); ``problem`` is a
    short code the page translates."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class UnitNotFound(PatrolError, LookupError):
    """No such unit (HTTP 404)."""
