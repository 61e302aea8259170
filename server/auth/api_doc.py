"""What /api/v1/session takes and answers, for the OpenAPI document
(server/web/openapi.py). server/auth/routes.py reads the login body by
hand; LoginIn describes what it accepts (unknown keys are ignored; each
value at most routes.MAX_CREDENTIAL_CHARS, 1024, characters)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from server.web.openapi import Out


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=1024)
    password: str = Field(min_length=1, max_length=1024)


class User(Out):
    id: int
    username: str
    role: Literal["admin", "landlord", "coordinator", "police"]
    display_name: str


class LoggedIn(Out):
    user: User
    csrf: str


class Session(Out):
    user: User
    # A cookie session's CSRF token, to send back as X-CSRF-Token on writes; None for a bearer token.
    csrf: str | None
    kind: Literal["cookie", "token"]
