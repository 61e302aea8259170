"""Facts a route declares about its handler where it is registered (its
access policy, its API description), kept as attributes of the handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def marked(attribute: str, value: object) -> Callable[[Handler], Handler]:
    """A decorator that returns a new function carrying ``value``: one
    handler may serve two routes with different declarations without the
    second overwriting the first. functools.wraps copies the wrapped
    function's attributes, so marks applied in any order all survive."""
    def mark(handler: Handler) -> Handler:
        @wraps(handler)
        async def declared(request: web.Request) -> web.StreamResponse:
            return await handler(request)

        setattr(declared, attribute, value)
        return declared
    return mark
