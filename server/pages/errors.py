"""Error pages for the person-facing routes: every 4xx and 5xx on a path that
is not the JSON API becomes a page in the visitor's language (Chinese unless
they chose English) with a way back home, instead of aiohttp's bare
"404: Not Found" or a JSON body a browser shows as code. A server error says
that it was the server's fault and nothing more: the exception goes to the
log, never to the page.

``/api/…`` keeps its JSON errors (server/api/routes.json_errors and the auth
policy's bodies), and ``/metrics`` and ``/healthz`` answer their probes as
before. A page that already rendered its own error (HTML) is left alone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from server.pages.layout import context, error_page

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROBES = ("/metrics", "/healthz")
# Headers of the original error a client still needs: what a 405 allows,
# when to retry, which authentication would work.
KEEP_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def is_page_path(path: str) -> bool:
    return not (path == "/api" or path.startswith("/api/") or path in PROBES)


def _is_html(response: web.StreamResponse) -> bool:
    return response.content_type == "text/html"


def _page_for(request: web.Request, status: int, original: web.StreamResponse | None) -> web.Response:
    response = error_page(context(request), status)
    if original is not None:
        for name in KEEP_HEADERS:
            if name in original.headers:
                response.headers[name] = original.headers[name]
    return response


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_page_path(request.path):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or _is_html(exc):
            raise
        return _page_for(request, exc.status, exc)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("error serving %s %s", request.method, request.path)
        return _page_for(request, 500, None)
    if (response.status >= 400 and isinstance(response, web.Response) and not response.prepared
            and not _is_html(response)):
        return _page_for(request, response.status, response)
    return response


def setup(app: web.Application) -> None:
    # First in the chain, so errors raised by the other middlewares (the
    # body limit's 413, the auth middleware's CSRF 403) get a page too.
    app.middlewares.insert(0, error_pages)
