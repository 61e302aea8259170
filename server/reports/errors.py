"""The reports package's exception root."""

from __future__ import annotations

from server.errors import ServerError


class ReportError(ServerError):
    """Root of the reports package's errors."""


class ReportInvalid(ReportError):
    """A field of the report that cannot be used (HTTP 400). ``problem`` is
    a short code the page translates: required, too_long, unknown, phone."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class RateLimited(ReportError):
    """Too many reports (HTTP 429); ``retry_after_s`` until the next is taken.
    ``scope``: "client" (this address, this unit) or "unit" (everyone)."""

    def __init__(self, scope: str, retry_after_s: float) -> None:
        super().__init__(f"too many reports ({scope}); retry in {retry_after_s:.0f} s")
        self.scope = scope
        self.retry_after_s = retry_after_s
