"""The errors a request can end in on purpose, and the HTTP status each
maps to (server/web/http.py's ``api_errors``). Every slice raises these;
none defines its own copy."""

from __future__ import annotations

from server.errors import ServerError


class RequestError(ServerError):
    """Root of the errors that answer a request with a 4xx or a 503."""


class InvalidInput(RequestError, ValueError):
    """A request field that cannot be used (HTTP 400)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotFound(RequestError, LookupError):
    """An id that names nothing (HTTP 404). The text names the kind of
    object, never the id: the id may be one outside the caller's scope."""

    def __init__(self, what: str, ident: object = None) -> None:
        super().__init__(f"no such {what}")
        self.what = what
        self.ident = ident


class Conflict(RequestError):
    """The request is well formed but the current state forbids it (HTTP 409)."""


class Unavailable(RequestError):
    """Something the request needs is not configured (HTTP 503); ``code`` names it."""

    code = "unavailable"
