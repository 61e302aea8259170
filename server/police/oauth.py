"""POST /api/v1/police/token: OAuth2 client credentials (RFC 6749 §4.4).

The client authenticates with HTTP Basic (client_secret_basic) or with
client_id and client_secret in the form (client_secret_post), and gets a
bearer token that lives ``police_token_ttl_s``. Errors follow RFC 6749
§5.2 (``error`` and ``error_description``), with the project's ``detail``
beside them. Failed attempts are throttled per client id and per address
like password logins, and every attempt, good or bad, is audited."""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from server.appkeys import ENGINE, SETTINGS
from server.audit.appkeys import AUDIT
from server.audit.entries import AuditEntry
from server.auth.appkeys import THROTTLE
from server.police.clients import authenticate_client, issue_token, well_formed_client_id, well_formed_secret
from server.web.http import dumps

GRANT = "client_credentials"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# The form is a few short fields; anything larger is not a token request.
MAX_FORM_BYTES = 4096


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str, *, basic: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.basic = basic
        self.retry_after = retry_after


def _reply(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers={**NO_STORE, **(headers or {})}, dumps=dumps)


def _basic(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise OAuthError(401, "invalid_client", "the Basic credentials are not base64 of id:secret",
                         basic=True) from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise OAuthError(401, "invalid_client", "the Basic credentials are not id:secret", basic=True)
    # RFC 6749 §2.3.1: both parts are form-urlencoded inside Basic.
    return unquote(user), unquote(password)


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_type != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "send application/x-www-form-urlencoded (RFC 6749 §4.4.2)")
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise OAuthError(400, "invalid_request", f"the form is larger than {MAX_FORM_BYTES} bytes")
    raw = await request.content.read(MAX_FORM_BYTES + 1)
    if len(raw) > MAX_FORM_BYTES:
        raise OAuthError(400, "invalid_request", f"the form is larger than {MAX_FORM_BYTES} bytes")
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw),
                          max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError(400, "invalid_request", "the form cannot be read") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            # RFC 6749 §3.2: parameters must not be repeated.
            raise OAuthError(400, "invalid_request", f"parameter {key[:40]!r} is repeated")
        if "\x00" in value or "\x00" in key:
            raise OAuthError(400, "invalid_request", "a parameter holds a NUL character")
        form[key] = value
    return form


def _exchange(engine: Any, client_id: str, secret: str, wanted: list[str] | None, ttl: timedelta
              ) -> tuple[str, list[str]] | None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        found = authenticate_client(conn, now, client_id, secret)
        if found is None:
            return None
        user_id, scopes = found
        if wanted is not None and not set(wanted) <= set(scopes):
            raise OAuthError(400, "invalid_scope", "the requested scope exceeds what the client was granted")
        return issue_token(conn, now, user_id, ttl), scopes


async def token(request: web.Request) -> web.StreamResponse:
    client_id: str | None = None
    try:
        basic = _basic(request)
        form = await _form(request)
        if form.get("grant_type") != GRANT:
            raise OAuthError(400, "unsupported_grant_type" if form.get("grant_type") else "invalid_request",
                             f"grant_type must be {GRANT}")
        if basic is not None:
            if "client_secret" in form:
                raise OAuthError(400, "invalid_request", "send the secret once: Basic or form, not both")
            client_id, secret = basic
        else:
            client_id, secret = form.get("client_id"), form.get("client_secret") or ""
            if not client_id:
                raise OAuthError(401, "invalid_client", "client authentication is required (HTTP Basic)", basic=True)
        wanted = form["scope"].split() if form.get("scope") else None
        throttle = request.app[THROTTLE]
        keys = ("police:" + client_id[:64], "addr:" + (request.remote or "?"))
        wait = throttle.retry_after(*keys)
        if wait > 0:
            raise OAuthError(429, "rate_limited", f"too many failed attempts; retry after {wait:.0f} s",
                             retry_after=wait)
        found = None
        if well_formed_client_id(client_id) and well_formed_secret(secret):
            ttl = timedelta(seconds=request.app[SETTINGS].police_token_ttl_s)
            found = await asyncio.to_thread(_exchange, request.app[ENGINE], client_id, secret, wanted, ttl)
        if found is None:
            throttle.failed(*keys)
            raise OAuthError(401, "invalid_client", "unknown client, wrong or expired secret, or revoked client",
                             basic=basic is not None)
        throttle.succeeded(keys[0])
        access_token, scopes = found
    except OAuthError as exc:
        await _audit(request, client_id, exc.status, {"error": exc.error})
        headers: dict[str, str] = {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="rentgate-police"'
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return _reply(exc.status, {"error": exc.error, "error_description": exc.description,
                                   "detail": exc.description}, headers)
    await _audit(request, client_id, 200, {"scopes": scopes})
    return _reply(200, {"access_token": access_token, "token_type": "Bearer",
                        "expires_in": request.app[SETTINGS].police_token_ttl_s, "scope": " ".join(scopes)})


async def _audit(request: web.Request, client_id: str | None, status: int, detail: dict[str, Any]) -> None:
    known = client_id is not None and well_formed_client_id(client_id)
    # An unknown id is not written as given: it could be anything, a secret
    # pasted in the wrong field included.
    actor = f"client:{client_id}" if known else "anonymous"
    await request.app[AUDIT].append(AuditEntry(actor=actor, action="police.token", status=status,
                                               detail=detail))
