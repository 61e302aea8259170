"""The audit slice's errors. An append that cannot be made durable is a
503 to the caller: an answer nobody could account for is not given."""

from __future__ import annotations

from server.errors import ServerError
from server.web.errors import Unavailable


class AuditError(ServerError):
    """Root of the audit log's own errors."""


class AuditUnavailable(AuditError, Unavailable):
    """The log could not be written (database down, or the log is stopping)."""

    code = "audit_unavailable"


class AuditKeyUnavailable(AuditError, Unavailable):
    """No usable checkpoint-signing key; the text says what to set (a 503
    on a route that needs it)."""

    code = "audit_key_unavailable"


class InvalidAuditEntry(AuditError, ValueError):
    """An entry the log refuses before it reaches the database: a field too
    long for its column, or a detail that is not plain JSON."""
