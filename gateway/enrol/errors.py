"""Why an enrolment did not happen, said for the person at the box.

Each error carries a short ``code`` for ``--json`` (stable, English), a
``message`` and a ``next_step`` already in the command's language, and the
exit code: 2 for what the person can fix (the code, the address, the folder),
1 for the server or the network."""

from __future__ import annotations

from gateway.errors import GatewayError


class EnrolError(GatewayError):
    exit_code = 1

    def __init__(self, code: str, message: str, next_step: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.next_step = next_step


class EnrolInputError(EnrolError):
    """Something typed or chosen at the box cannot be used."""

    exit_code = 2


class EnrolRefused(EnrolError):
    """The server refused the code: wrong, used, expired or cancelled."""

    exit_code = 2


class EnrolNetworkError(EnrolError):
    """The server could not be reached, or not safely (TLS)."""


class EnrolServerError(EnrolError):
    """The server answered, but not with a usable enrolment."""


class EnrolWriteError(EnrolError):
    """The gateway's folder could not be written."""
