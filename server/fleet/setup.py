"""Wires the fleet slice into the application: the broker provisioner and
the gateway CA (shared by enrolment and revocation), enrolment, revocation,
remote configuration and fleet health."""

from __future__ import annotations

from aiohttp import web

from server.fleet import broker, config_routes, enrol_routes, health, revoke


def setup(app: web.Application, *, run_service: bool, publish: bool = False) -> None:
    """``run_service``: the background services (one process); ``publish``
    alone: a web process that publishes the configurations it makes."""
    broker.setup(app)
    enrol_routes.setup(app)
    revoke.setup(app)
    config_routes.setup(app, run_service=run_service, publish=publish)
    health.setup(app, run_service=run_service)
