"""Routes of the plate scan pages (public) and the coordinator's unit and
patrol pages, and the photos they show."""

from __future__ import annotations

from aiohttp import web

from server.auth.policy import allow, public
from server.pages import patrol_form, photo, plate_public, plate_report, unit_coordinator
from server.pages.scan_common import WORK_ROLES

# Any path segment: whatever is not a token gets the "not a plate" page
# (and a logged attempt), not the server's bare 404.
TOKEN = "{token}"


UNIT = {"id": "unit"}
UNIT_CASE = {"id": "unit", "case_id": "case"}
UNIT_REG = {"id": "unit", "reg_id": "registration"}
PLATE = "a signed door-plate token; refused scans are logged"


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get(f"/p/{TOKEN}", public(PLATE)(plate_public.public_page))
    r.add_get(f"/p/{TOKEN}/declare", public(PLATE)(plate_public.declare_page))
    r.add_post(f"/p/{TOKEN}/declare", public(PLATE + "; rate-limited")(plate_public.declare_submit))
    r.add_get(f"/p/{TOKEN}/report", public(PLATE)(plate_report.report_page))
    r.add_post(f"/p/{TOKEN}/report", public(PLATE + "; rate-limited")(plate_report.report_submit))
    r.add_get(r"/c/units/{id:\d+}", allow(*WORK_ROLES, page=True, path=UNIT)(unit_coordinator.unit_handler))
    r.add_get(r"/c/units/{id:\d+}/patrol", allow(*WORK_ROLES, page=True, path=UNIT)(patrol_form.patrol_page))
    r.add_post(r"/c/units/{id:\d+}/patrol", allow(*WORK_ROLES, page=True, path=UNIT)(patrol_form.patrol_submit))
    r.add_post(r"/c/units/{id:\d+}/cases/{case_id:\d+}/resolve", allow(*WORK_ROLES, page=True, path=UNIT_CASE)(
        unit_coordinator.resolve_handler))
    r.add_post(r"/c/units/{id:\d+}/cases/{case_id:\d+}/escalate", allow(*WORK_ROLES, page=True, path=UNIT_CASE)(
        unit_coordinator.escalate_handler))
    r.add_post(r"/c/units/{id:\d+}/registrations/{reg_id:\d+}/confirm", allow(*WORK_ROLES, page=True, path=UNIT_REG)(
        unit_coordinator.confirm_handler))
    r.add_post(r"/c/units/{id:\d+}/registrations/{reg_id:\d+}/reject", allow(*WORK_ROLES, page=True, path=UNIT_REG)(
        unit_coordinator.reject_handler))
    photo.add_routes(r)
