"""The plates package's exception root."""

from __future__ import annotations

from server.errors import ServerError


class PlateError(ServerError):
    """Root of the plates package's errors."""


class PlateKeyUnavailable(PlateError):
    """No usable plate-signing key (file missing, unreadable or malformed)."""


class TokenRejected(PlateError):
    """A plate token that must not be honoured. ``reason`` is one of
    REJECTION_REASONS; the message is safe to log (it never holds the token)."""

    def __init__(self, reason: str, detail: str, plate_id: int | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.plate_id = plate_id


# malformed: not a token at all; unknown_key: signed with a key this server
# does not hold (forged, or a retired key); bad_signature: altered or forged;
# expired; revoked; unknown_plate: signed but no such plate (a restored backup).
REJECTION_REASONS = ("malformed", "unknown_key", "bad_signature", "expired", "revoked", "unknown_plate")
