"""Typed keys of the server's aiohttp application state."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from server.ingest.consumer import IngestService
from server.ingest.metrics import IngestMetrics
from server.settings import ServerSettings

SETTINGS = web.AppKey("settings", ServerSettings)
ENGINE = web.AppKey("engine", sa.Engine)
METRICS = web.AppKey("metrics", IngestMetrics)
INGEST = web.AppKey("ingest", IngestService)
# Autocommit connections for hot reads (server/db/read_pool.py).
READ_ENGINE = web.AppKey("read_engine", sa.Engine)
