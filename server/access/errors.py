"""The access package's exception root and what the API turns into 4xx."""

from __future__ import annotations

from server.errors import ServerError


class AccessError(ServerError):
    """Root of this package's errors."""


class InvalidInput(AccessError, ValueError):
    """A request field that cannot be used (HTTP 400)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotFound(AccessError, LookupError):
    """An id that names nothing (HTTP 404)."""

    def __init__(self, what: str, ident: object) -> None:
        super().__init__(f"no {what} {ident}")
        self.what = what
        self.ident = ident


class Conflict(AccessError):
    """The request is well formed but the current state forbids it (HTTP 409)."""


class Unavailable(AccessError):
    """Something the request needs is not configured (HTTP 503); ``code`` names it."""

    code = "unavailable"


class SigningKeyUnavailable(AccessError):
    """No allowlist signing key: allowlists are not published."""
