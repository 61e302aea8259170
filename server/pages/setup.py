"""Wires the pages (login, landlord, declaration, overview) and their error
pages into the application."""

from __future__ import annotations

from aiohttp import web

from server.pages import declare, errors, grid_routes, landlord, landlord_actions, login, overview, scan_routes
from server.pages.state import pages_ctx


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(pages_ctx)
    errors.setup(app)
    r = app.router
    r.add_get("/login", login.login_page)
    r.add_post("/login", login.login_submit)
    r.add_post("/logout", login.logout_submit)
    r.add_get("/landlord", landlord.buildings_handler)
    r.add_get(r"/landlord/buildings/{id:\d+}", landlord.building_handler)
    r.add_get(r"/landlord/units/{id:\d+}", landlord.unit_handler)
    r.add_post(r"/landlord/units/{id:\d+}/register", landlord_actions.register_handler)
    r.add_post(r"/landlord/registrations/{id:\d+}/deregister", landlord_actions.deregister_handler)
    r.add_post(r"/landlord/registrations/{id:\d+}/confirm", landlord_actions.confirm_handler)
    r.add_post(r"/landlord/registrations/{id:\d+}/reject", landlord_actions.reject_handler)
    r.add_post(r"/landlord/cases/{id:\d+}/departure", landlord_actions.departure_handler)
    r.add_get(r"/declare/{id:\d+}", declare.declare_page)
    r.add_post(r"/declare/{id:\d+}", declare.declare_submit)
    r.add_get("/overview", overview.overview_handler)
    scan_routes.add_routes(r)
    grid_routes.add_routes(r)
