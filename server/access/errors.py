"""The access package's exception root. The generic request errors
(InvalidInput, NotFound, Conflict, Unavailable) live in server/web/errors.py."""

from __future__ import annotations

from server.errors import ServerError


class AccessError(ServerError):
    """Root of this package's errors."""


class SigningKeyUnavailable(AccessError):
    """No allowlist signing key: allowlists are not published."""
