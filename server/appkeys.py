"""Typed keys of the server's aiohttp application state that every slice
may use. A slice keeps its own keys in its own appkeys module."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from aiohttp import web

from server.settings import ServerSettings

SETTINGS = web.AppKey("settings", ServerSettings)
ENGINE = web.AppKey("engine", sa.Engine)
# Autocommit connections for hot reads (server/db/read_pool.py).
READ_ENGINE = web.AppKey("read_engine", sa.Engine)
# Slices that nothing may import (retention) add their /metrics text here:
# each callable returns Prometheus lines, ending in a newline.
METRIC_SOURCES = web.AppKey("metric_sources", list[Callable[[], str]])
