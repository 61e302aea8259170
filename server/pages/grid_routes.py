"""Routes of the coordinator's task queue, task steps, overdue list and
workload pages."""

from __future__ import annotations

from aiohttp import web

from server.pages import grid_pages, grid_task_page, plates_print


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/c", grid_pages.home_handler)
    r.add_get("/c/overdue", grid_pages.overdue_handler)
    r.add_get("/c/workload", grid_pages.workload_handler)
    r.add_get("/c/plates", plates_print.plates_page)
    r.add_post("/c/plates", plates_print.plates_download)
    r.add_get(r"/c/tasks/{id:\d+}", grid_task_page.task_handler)
    r.add_post(r"/c/tasks/{id:\d+}/{action:[a-z_]+}", grid_task_page.action_handler)
