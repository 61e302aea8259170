"""What every JSON API handler of the server shares: reading a validated
body, writing an answer with dates as ISO text, and turning the registry's
errors into 4xx/5xx answers with the same shape everywhere:
``{"error": "bad_parameter", "field": ..., "detail": ...}``."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.web.body import NUL_PROBLEM, json_body
from server.web.errors import Conflict, InvalidInput, NotFound, Unavailable
from server.web.ids import MAX_ID

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


dumps = functools.partial(json.dumps, default=_json_default, ensure_ascii=False)


def int_param(query: Any, name: str, *, default: int | None = None, lo: int = 1, hi: int = MAX_ID) -> int | None:
    """A whole-number query parameter in [lo, hi] (ASCII digits, an optional
    minus), or InvalidInput naming it."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    digits = raw[1:] if raw.startswith("-") else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        raise InvalidInput(name, "not a whole number")
    value = int(raw)
    if not lo <= value <= hi:
        raise InvalidInput(name, f"must be between {lo} and {hi}")
    return value


def answer(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=dumps)


async def read_body(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    """The JSON body as ``model``; ``optional``: an empty body means ``{}``."""
    raw = await json_body(request, optional=optional)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        # Never echo the input: it may be an identity number.
        raise InvalidInput(".".join(str(p) for p in err["loc"]) or "body", err["msg"]) from None


# The codes of the refusals aiohttp itself makes before a handler runs.
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type"}


@web.middleware
async def json_http_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (no such route, a method the route lacks, a
    body over the size limit) are text/plain; under /api/ a client expects
    the API's one error shape, ``{"error", "detail"}``, so they get it,
    with their headers (Allow, Retry-After, WWW-Authenticate) kept.
    Outermost, so that it also sees the body-size middleware's 413."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if (exc.status < 400 or not request.path.startswith("/api/")
                or (exc.content_type or "").startswith("application/json")):
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        body = {"error": _HTTP_CODES.get(exc.status, "http_error"), "detail": exc.reason.lower()}
        return web.json_response(body, status=exc.status, headers=headers)


@web.middleware
async def no_nul_in_query(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A query parameter holding U+0000 is a 400 on every API route, before
    any handler: PostgreSQL refuses NUL in text, and a query comparing a
    column with such a value would end in a driver error (a 5xx). Bodies
    get the same rule in server/web/body.py."""
    if request.path.startswith("/api/"):
        for key, value in request.query.items():
            if "\x00" in key or "\x00" in value:
                name = key.replace("\x00", "")[:100] or "query"
                return answer({"error": "bad_parameter", "field": name, "detail": NUL_PROBLEM}, 400)
    return await handler(request)


def api_errors(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except InvalidInput as exc:
            return answer({"error": "bad_parameter", "field": exc.field, "detail": exc.problem}, 400)
        except NotFound as exc:
            return answer({"error": "not_found", "detail": str(exc)}, 404)
        except Conflict as exc:
            return answer({"error": "conflict", "detail": str(exc)}, 409)
        except sa.exc.IntegrityError:
            # Lost a race with a concurrent writer on a unique key.
            log.warning("write refused by a database constraint", exc_info=True)
            return answer({"error": "conflict", "detail": "conflicting concurrent change; try again"}, 409)
        except Unavailable as exc:
            return answer({"error": exc.code, "detail": str(exc)}, 503)
    return wrapped
