"""Typed application-state keys of reconciliation."""

from __future__ import annotations

from aiohttp import web

from server.reconcile.runner import Reconciler
from server.reconcile.service import ReconcileService

RECONCILER = web.AppKey("reconciler", Reconciler)
SERVICE = web.AppKey("reconcile_service", ReconcileService)
