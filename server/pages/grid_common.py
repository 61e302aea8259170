"""Pieces the grid pages share: who may open them, local times, a task's
kind in words, a task as a card in a list, and reads in a worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from aiohttp import web

from server.auth.policy import AuthUser
from server.pages.guard import page_user, read
from server.pages.layout import PageContext, esc
from server.pages.state import PAGES
from server.rules import CityRules

T = TypeVar("T")
GRID_ROLES = ("admin", "coordinator")
CSS = """
.steps{display:flex;flex-wrap:wrap;gap:4px;list-style:none;padding:0;margin:0 0 10px}
.steps li{flex:1 1 30%;text-align:center;padding:6px 2px;border-radius:6px;background:#e8eaed;color:#555;
font-size:.9rem}
.steps li.done{background:#d2e3fc;color:#1a4d8f}
.steps li.current{background:#1a4d8f;color:#fff;font-weight:700}
.late{color:#d93025;font-weight:700}
.chip.state{background:#5f6368}
.chip.esc{background:#d93025}
ol.trail{padding-left:18px;margin:0} ol.trail li{margin:0 0 8px}
.stats{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 10px}
.stats a,.stats span{flex:1 1 40%;background:#fff;border-radius:8px;padding:10px;text-decoration:none;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
.stats strong{display:block;font-size:1.4rem}
form.action{margin:0 0 12px;padding:0 0 10px;border-bottom:1px solid #e3e5e8}
form.action:last-child{border-bottom:0}
.choices label{display:inline-block;font-weight:400;margin-right:14px}
.choices input{width:auto;min-height:0}
"""


def grid_user(request: web.Request) -> tuple[PageContext, AuthUser]:
    return page_user(request, *GRID_ROLES)


def rules_of(request: web.Request) -> CityRules:
    return request.app[PAGES].rules


def now() -> datetime:
    return datetime.now(UTC)


async def run_read(request: web.Request, fn: Callable[[sa.Connection], T]) -> T:
    def run() -> T:
        with read(request).connect() as conn:
            return fn(conn)
    return await asyncio.to_thread(run)


def local(rules: CityRules, when: datetime | None) -> str:
    if when is None:
        return ""
    return when.astimezone(rules.zone).strftime("%Y-%m-%d %H:%M")


def kind_label(t: dict[str, str], kind: str) -> str:
    return t.get(f"task.kind.{kind}") or t.get(f"case.{kind}") or kind


def state_chip(t: dict[str, str], state: str) -> str:
    return f'<span class="chip state" data-state="{esc(state)}">{esc(t["task.state." + state])}</span>'


def place(task: dict[str, Any]) -> str:
    """Building and unit as a coordinator says it: "幸福楼 102"."""
    parts = [task.get("building_name") or "", task.get("unit_number") or ""]
    return " ".join(p for p in parts if p)


def due_text(ctx: PageContext, rules: CityRules, task: dict[str, Any]) -> str:
    if task.get("due_at") is None:
        return ""
    text = f'{esc(ctx.t["task.due"])} {esc(local(rules, task["due_at"]))}'
    if task.get("overdue"):
        text += f' <span class="late">{esc(ctx.t["task.overdue"])}</span>'
    return text


def task_card(ctx: PageContext, rules: CityRules, task: dict[str, Any], extra: str = "") -> str:
    t = ctx.t
    escalated = (f' <span class="chip esc">{esc(t["task.escalated"])}</span>'
                 if task.get("escalated_at") and task["state"] == "reported" else "")
    assignee = task.get("assignee_name") or t["task.nobody"]
    return (f'<div class="card task" data-task="{task["id"]}"><h3><a href="/c/tasks/{task["id"]}">'
            f'#{task["id"]} {esc(kind_label(t, task["kind"]))}</a></h3>'
            f'<div class="row">{state_chip(t, task["state"])}{escalated}'
            f'<span class="meta">{esc(place(task))} · {esc(task.get("grid_code") or "")}</span></div>'
            f'<div class="meta">{esc(t["task.assignee"])}{esc(t["sep"])}{esc(assignee)} · '
            f'{due_text(ctx, rules, task)}</div>{extra}</div>')
