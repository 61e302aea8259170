"""The grid package's exception root. Each error also subclasses the shared
request error it is (server/web/errors.py: InvalidInput, NotFound,
Conflict), so the shared JSON error mapping (server/web/http.api_errors) and
pages that already catch those answer 400 / 404 / 409 without knowing this
package."""

from __future__ import annotations

from server.errors import ServerError
from server.web.errors import Conflict, InvalidInput, NotFound


class GridError(ServerError):
    """Root of the grid package's errors."""


class GridInputError(GridError, InvalidInput):
    """A field that cannot be used (HTTP 400)."""


class GridNotFound(GridError, NotFound):
    """A task, grid, user or case that does not exist (HTTP 404)."""


class GridConflict(GridError, Conflict):
    """The current state forbids the request (HTTP 409)."""


class IllegalTransition(GridConflict):
    """An action that the workflow's table does not allow from the task's
    current state, or an action the table does not know."""

    def __init__(self, action: str, state: str, detail: str | None = None) -> None:
        super().__init__(detail or f"action {action!r} is not allowed when the task is {state!r}")
        self.action = action
        self.state = state


class NotPermitted(GridError):
    """The user may not take this action on this task (HTTP 403)."""
