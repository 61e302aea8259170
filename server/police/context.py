"""Every police API call goes through ``police_api``: who is asking (their
scopes, rate, quota), why (the purpose), what the answer may hold (scopes
AND purpose), and an audit entry for the call, refusals included, appended
before the answer leaves (docs/police.md, docs/audit.md).

The route policy (server/auth) has already let only the ``police`` role
in, and checked any building or unit the request names against the
caller's jurisdiction, before this runs."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from aiohttp import web

from server.audit.appkeys import AUDIT
from server.audit.entries import AuditEntry
from server.auth.identity import current_user
from server.db.read_pool import read_only, with_retry
from server.police.appkeys import METER, RULES_ZONE
from server.police.principals import PoliceCaller, load_caller
from server.police.purposes import PURPOSES, Purpose, granted_parts, parse_purpose
from server.web.body import json_body
from server.web.errors import InvalidInput, NotFound, RequestError, Unavailable
from server.web.http import dumps
from server.web.ratelimit import retry_after_header

log = logging.getLogger(__name__)

PurposeFrom = Literal["body", "query", "none"]
# Query parameters that carry the purpose on GET and DELETE.
QUERY_PURPOSE = {"purpose": "code", "legal_basis": "legal_basis", "case_ref": "case_ref", "badge": "badge"}
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class PoliceContext:
    caller: PoliceCaller
    purpose: Purpose | None
    # What the answer may contain: the caller's scopes AND the purpose.
    parts: frozenset[str]
    body: Mapping[str, Any]
    today: date

    def may(self, part: str) -> bool:
        return part in self.parts


@dataclass
class PoliceAnswer:
    body: Any
    status: int = 200
    subject: str | None = None
    # How much the answer held (persons, lines, events).
    size: int = 0
    # Identity numbers checked, for the daily quota.
    subjects_checked: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


class PoliceRefusal(RequestError):
    """A refusal with its own status and code (403 scope, 429 rate/quota)."""

    def __init__(self, status: int, code: str, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


PoliceHandler = Callable[[web.Request, PoliceContext], Awaitable[PoliceAnswer]]


def local_today(request: web.Request) -> date:
    return datetime.now(request.app[RULES_ZONE]).date()


async def caller_of(request: web.Request) -> PoliceCaller:
    user = current_user(request)
    if user is None or user.role != "police":
        raise PoliceRefusal(403, "forbidden", "only police accounts use this API")
    def read() -> PoliceCaller | None:
        with read_only(request.app) as conn:
            return load_caller(conn, user.id)

    caller = await asyncio.to_thread(with_retry, read)
    if caller is None:
        raise PoliceRefusal(403, "forbidden", "this police account is not enabled; ask the administrator")
    return caller


def _purpose_source(request: web.Request, source: PurposeFrom, body: Mapping[str, Any]) -> Any:
    if source == "body":
        return body.get("purpose")
    raw = {field_name: request.query[param] for param, field_name in QUERY_PURPOSE.items() if param in request.query}
    return raw or None


async def admit(request: web.Request, caller: PoliceCaller, *, needs: str, purpose_from: PurposeFrom,
                cost: int, body: Mapping[str, Any]) -> PoliceContext:
    """Checks everything that decides whether the call may run, in the
    order that reveals least: scope, purpose, rate, quota."""
    granted = granted_parts(caller.scopes)
    if needs not in granted:
        raise PoliceRefusal(403, "scope_missing", f"this account's scopes do not allow '{needs}'")
    purpose: Purpose | None = None
    parts = granted
    if purpose_from != "none":
        purpose = parse_purpose(_purpose_source(request, purpose_from, body), badge_required=caller.is_officer,
                                where="purpose" if purpose_from == "body" else "query")
        if needs not in purpose.kind.permits:
            raise InvalidInput("purpose.code", f"the purpose '{purpose.code}' does not permit '{needs}'; "
                               "permitted: " + ", ".join(sorted(purpose.kind.permits)))
        parts = granted & purpose.kind.permits
    meter = request.app[METER]
    wait = meter.rate_hit(caller.user_id, caller.rate_per_min)
    if wait is not None:
        raise PoliceRefusal(429, "rate_limited", f"more than {caller.rate_per_min} requests a minute",
                            retry_after=wait)
    today = local_today(request)
    if cost:
        if not meter.known(caller.user_id, today):
            def load() -> None:
                with read_only(request.app) as conn:
                    meter.load(conn, caller.user_id, today)
            await asyncio.to_thread(with_retry, load)
        if meter.left(caller.user_id, today, caller.daily_quota) < cost:
            raise PoliceRefusal(429, "quota_exceeded",
                                f"the daily quota of {caller.daily_quota} identity numbers is used up for today",
                                retry_after=_seconds_to_midnight(request))
    return PoliceContext(caller, purpose, parts, body, today)


def _seconds_to_midnight(request: web.Request) -> float:
    now = datetime.now(request.app[RULES_ZONE])
    tomorrow = datetime.combine(now.date(), datetime.min.time(), now.tzinfo).timestamp() + 86400
    return max(1.0, tomorrow - now.timestamp())


def refusal_response(exc: RequestError) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = dict(NO_STORE)
    if isinstance(exc, PoliceRefusal):
        if exc.retry_after is not None:
            headers["Retry-After"] = retry_after_header(exc.retry_after)
        return exc.status, {"error": exc.code, "detail": exc.detail}, headers
    if isinstance(exc, InvalidInput):
        return 400, {"error": "bad_parameter", "field": exc.field, "detail": exc.problem}, headers
    if isinstance(exc, NotFound):
        return 404, {"error": "not_found", "detail": str(exc)}, headers
    if isinstance(exc, Unavailable):
        return 503, {"error": exc.code, "detail": str(exc)}, headers
    return 409, {"error": "conflict", "detail": str(exc)}, headers


async def run_call(request: web.Request, action: str, handler: PoliceHandler, *, needs: str,
                   purpose_from: PurposeFrom = "body", cost: int = 1,
                   body: Mapping[str, Any] | None = None) -> tuple[int, Any, dict[str, str]]:
    """Admits the call, runs it and audits it (also when refused): the
    status, the answer and its headers. ``body`` None: the request's JSON
    body is read (the API); the console page passes its form as a dict."""
    caller: PoliceCaller | None = None
    purpose: Purpose | None = None
    try:
        caller = await caller_of(request)
        if body is None:
            raw = await json_body(request)
            if not isinstance(raw, dict):
                raise InvalidInput("body", "a JSON object is required")
            body = raw
        ctx = await admit(request, caller, needs=needs, purpose_from=purpose_from, cost=cost, body=body)
        purpose = ctx.purpose
        result = await handler(request, ctx)
    except RequestError as exc:
        status, payload, headers = refusal_response(exc)
        detail = {"error": payload["error"]}
        if "field" in payload:
            detail["field"] = payload["field"]
        await _audit(request, caller, action, purpose, status=status, size=0, subject=None, detail=detail)
        return status, payload, headers
    if result.subjects_checked:
        request.app[METER].add(caller.user_id, ctx.today, result.subjects_checked)
    await _audit(request, caller, action, purpose, status=result.status, size=result.size,
                 subject=result.subject, detail=result.detail)
    return result.status, result.body, dict(NO_STORE)


def police_api(action: str, *, needs: str, purpose_from: PurposeFrom = "body", cost: int = 1,
               read_json: bool | None = None
               ) -> Callable[[PoliceHandler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wraps a police handler into a route handler (see ``run_call``).
    ``cost``: identity numbers the call checks (0 for calls that check
    none, e.g. listing watches). ``read_json``: whether the request has a
    JSON body (default: when the purpose is in it)."""
    reads = purpose_from == "body" if read_json is None else read_json

    def wrap(handler: PoliceHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            status, payload, headers = await run_call(
                request, action, handler, needs=needs, purpose_from=purpose_from, cost=cost,
                body=None if reads else {})
            return web.json_response(payload, status=status, headers=headers, dumps=dumps)

        return run

    return wrap


async def _audit(request: web.Request, caller: PoliceCaller | None, action: str, purpose: Purpose | None, *,
                 status: int, size: int, subject: str | None, detail: Mapping[str, Any]) -> None:
    """Appends the call's entry and waits until it is durable: an answer
    nobody could account for is not given (a failure here is a 503)."""
    actor = caller.actor if caller is not None else _actor_of_request(request)
    entry = AuditEntry(actor=actor, action=action, subject=subject, status=status,
                       purpose=purpose.as_record() if purpose is not None else None, size=size,
                       detail=dict(detail))
    try:
        await request.app[AUDIT].append(entry)
    except Exception as exc:
        log.warning("audit log unavailable, refusing %s: %s", action, exc)
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": "audit_unavailable",
                             "detail": "the audit log cannot be written; try again shortly"}),
            content_type="application/json") from None


def _actor_of_request(request: web.Request) -> str:
    user = current_user(request)
    return f"user:{user.id}" if user is not None else "anonymous"


def purpose_codes() -> list[str]:
    return list(PURPOSES)
