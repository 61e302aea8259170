"""Wires the pages (login, landlord, declaration, overview) and their error
pages into the application."""

from __future__ import annotations

from aiohttp import web

from server.auth.policy import allow, public
from server.pages import (
    camera_alerts,
    declare,
    errors,
    fleet,
    gateway_config,
    grid_routes,
    landlord,
    landlord_actions,
    login,
    overview,
    police_console,
    scan_routes,
    terminals,
)
from server.pages.guard import LANDLORD_ROLES, OVERVIEW_ROLES
from server.pages.state import pages_ctx

REG = {"id": "registration"}
GONE = "an old address: always answers 404 with a page that says to scan the door plate"


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(pages_ctx)
    errors.setup(app)
    r = app.router
    r.add_get("/login", public("anyone may see the login form")(login.login_page))
    r.add_post("/login", public("throttled per user name and address")(login.login_submit))
    r.add_post("/logout", public("ends the caller's own session, if any")(login.logout_submit))
    r.add_get("/landlord", allow(*LANDLORD_ROLES, page=True, rule="lists only the buildings in the caller's scope")(
        landlord.buildings_handler))
    r.add_get(r"/landlord/buildings/{id:\d+}", allow(*LANDLORD_ROLES, page=True, path={"id": "building"})(
        landlord.building_handler))
    r.add_get(r"/landlord/units/{id:\d+}", allow(*LANDLORD_ROLES, page=True, path={"id": "unit"})(landlord.unit_handler))
    r.add_post(r"/landlord/units/{id:\d+}/register", allow(*LANDLORD_ROLES, page=True, path={"id": "unit"})(
        landlord_actions.register_handler))
    r.add_post(r"/landlord/registrations/{id:\d+}/deregister", allow(*LANDLORD_ROLES, page=True, path=REG)(
        landlord_actions.deregister_handler))
    r.add_post(r"/landlord/registrations/{id:\d+}/confirm", allow(*LANDLORD_ROLES, page=True, path=REG)(
        landlord_actions.confirm_handler))
    r.add_post(r"/landlord/registrations/{id:\d+}/reject", allow(*LANDLORD_ROLES, page=True, path=REG)(
        landlord_actions.reject_handler))
    r.add_post(r"/landlord/cases/{id:\d+}/departure", allow(*LANDLORD_ROLES, page=True, path={"id": "case"})(
        landlord_actions.departure_handler))
    r.add_get(r"/declare/{id:\d+}", public(GONE)(declare.declare_page))
    r.add_post(r"/declare/{id:\d+}", public(GONE)(declare.declare_submit))
    r.add_get("/overview", allow(*OVERVIEW_ROLES, page=True, rule="a coordinator sees the figures of their own grids")(
        overview.overview_handler))
    console = "police officers; the same scopes, purposes, limits and audit as the police API"
    r.add_get("/police", allow("police", page=True, rule=console)(police_console.console_page))
    r.add_post("/police/person", allow("police", page=True, rule=console)(police_console.person_submit))
    r.add_post("/police/address", allow("police", page=True, rule=console)(police_console.address_submit))
    scan_routes.add_routes(r)
    grid_routes.add_routes(r)
    camera_alerts.add_routes(r)
    terminals.add_routes(r)
    fleet.add_routes(r)
    gateway_config.add_routes(r)
