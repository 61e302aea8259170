"""Routes of the plate scan pages (public) and the coordinator's unit and
patrol pages, and the photos they show."""

from __future__ import annotations

from aiohttp import web

from server.media import routes as media_routes
from server.pages import patrol_form, plate_public, plate_report, unit_coordinator

# Any path segment: whatever is not a token gets the "not a plate" page
# (and a logged attempt), not the server's bare 404.
TOKEN = "{token}"


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get(f"/p/{TOKEN}", plate_public.public_page)
    r.add_get(f"/p/{TOKEN}/declare", plate_public.declare_page)
    r.add_post(f"/p/{TOKEN}/declare", plate_public.declare_submit)
    r.add_get(f"/p/{TOKEN}/report", plate_report.report_page)
    r.add_post(f"/p/{TOKEN}/report", plate_report.report_submit)
    r.add_get(r"/c/units/{id:\d+}", unit_coordinator.unit_handler)
    r.add_get(r"/c/units/{id:\d+}/patrol", patrol_form.patrol_page)
    r.add_post(r"/c/units/{id:\d+}/patrol", patrol_form.patrol_submit)
    r.add_post(r"/c/units/{id:\d+}/cases/{case_id:\d+}/resolve", unit_coordinator.resolve_handler)
    r.add_post(r"/c/units/{id:\d+}/cases/{case_id:\d+}/escalate", unit_coordinator.escalate_handler)
    r.add_post(r"/c/units/{id:\d+}/registrations/{reg_id:\d+}/confirm", unit_coordinator.confirm_handler)
    r.add_post(r"/c/units/{id:\d+}/registrations/{reg_id:\d+}/reject", unit_coordinator.reject_handler)
    media_routes.add_routes(r)
