"""Reading a JSON request body once, with bounds: UTF-8 only, nesting depth
at most MAX_DEPTH, no duplicated keys, no NaN or Infinity. The size is
bounded before this by aiohttp's client_max_size and
server/media/limits.py. The parsed value is kept on the request, so the
route policy (which reads ids in the body) and the handler parse once."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from server.web.errors import InvalidInput

MAX_DEPTH = 32
_PARSED = web.RequestKey("rentgate_json_body", object)
_EMPTY = object()
# Strings are removed before brackets are counted: a "[" inside a string is
# text, not nesting. The regex runs in C; the loop then sees only brackets.
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")


class DuplicateKey(ValueError):
    pass


def depth_of(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (linear, no recursion)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b"", raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen[key] = value
    return seen


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> object:
    """``raw`` decoded strictly, or InvalidInput("body", what is wrong)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("body", "not UTF-8 text") from None
    if depth_of(raw) > MAX_DEPTH:
        raise InvalidInput("body", f"nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except DuplicateKey as exc:
        raise InvalidInput("body", f"the key {str(exc)[:40]!r} appears twice") from None
    except (ValueError, RecursionError):
        # ValueError also covers integers longer than Python converts.
        raise InvalidInput("body", "not JSON") from None
    if "\\u0000" in text:  # cheap test first: only an escape can put a NUL in JSON text
        where = nul_at(value)
        if where is not None:
            raise InvalidInput(where[:100] or "body", NUL_PROBLEM)
    return value


NUL_PROBLEM = "holds a NUL character (U+0000), which no text may contain"


def nul_at(value: object) -> str | None:
    """The dotted path of the first string (or key) in ``value`` holding
    U+0000, or None. PostgreSQL refuses NUL in text and in jsonb, and the
    driver's error would answer a 5xx: no field of any body may hold one.
    Iterative (the depth is bounded already, but a stack costs nothing)."""
    stack: list[tuple[object, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path
        elif isinstance(item, dict):
            for key, sub in item.items():
                here = f"{path}.{key}" if path else str(key)
                if "\x00" in key:
                    return here.replace("\x00", "")
                stack.append((sub, here))
        elif isinstance(item, list):
            stack.extend((sub, f"{path}.{i}" if path else str(i)) for i, sub in enumerate(item))
    return None


async def json_body(request: web.Request, *, optional: bool = False) -> object:
    """The request's JSON body (parsed once per request). ``optional``: an
    empty body is ``{}``."""
    cached = request.get(_PARSED, _EMPTY)
    if cached is _EMPTY:
        raw = await request.read()
        cached = None if not raw.strip() else parse_json(raw)
        request[_PARSED] = cached
    if cached is None:
        if optional:
            return {}
        raise InvalidInput("body", "a JSON body is required")
    return cached
