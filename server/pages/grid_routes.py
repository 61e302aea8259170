"""Routes of the coordinator's task queue, task steps, overdue list and
workload pages."""

from __future__ import annotations

from aiohttp import web

from server.auth.policy import allow
from server.pages import grid_pages, grid_task_page, plates_print
from server.pages.grid_common import GRID_ROLES


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/c", allow(*GRID_ROLES, page=True, rule="the tasks of the caller's grids and their own")(
        grid_pages.home_handler))
    r.add_get("/c/overdue", allow(*GRID_ROLES, page=True, rule="units of the caller's grids")(
        grid_pages.overdue_handler))
    r.add_get("/c/workload", allow(*GRID_ROLES, page=True, rule="the caller's grids")(grid_pages.workload_handler))
    r.add_get("/c/plates", allow(*GRID_ROLES, page=True, rule="buildings of the caller's grids")(
        plates_print.plates_page))
    r.add_post("/c/plates", allow(*GRID_ROLES, page=True, rule="buildings of the caller's grids")(
        plates_print.plates_download))
    r.add_get(r"/c/tasks/{id:\d+}", allow(*GRID_ROLES, page=True, path={"id": "task"})(grid_task_page.task_handler))
    r.add_post(r"/c/tasks/{id:\d+}/{action:[a-z_]+}", allow(*GRID_ROLES, page=True, path={"id": "task"})(
        grid_task_page.action_handler))
