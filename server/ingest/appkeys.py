"""The ingest slice's keys in the aiohttp application state (the
application-wide ones are in server/appkeys.py, which imports no slice)."""

from __future__ import annotations

from aiohttp import web

from server.ingest.consumer import IngestService
from server.ingest.metrics import IngestMetrics

METRICS = web.AppKey("metrics", IngestMetrics)
INGEST = web.AppKey("ingest", IngestService)
