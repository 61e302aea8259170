"""A task on a phone (/c/tasks/{id}): what and where (with a link to the
unit page), its case, the six steps with the current one highlighted,
deadline and overdue marking, a form for each action this person may take
now, and the full trail. POST /c/tasks/{id}/{action} takes the action
(Post/Redirect/Get); a refusal comes back on the same page with the reason
(400 input, 403 not yours to take, 409 the task has moved on)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from server.auth.policy import AuthUser, actor_of
from server.grid import service, workflow
from server.grid.errors import GridConflict, GridInputError, GridNotFound, IllegalTransition, NotPermitted
from server.pages.forms import read_form
from server.pages.grid_common import (
    CSS,
    grid_user,
    kind_label,
    local,
    now,
    rules_of,
    run_read,
    state_chip,
)
from server.pages.guard import page_not_found, read, safe_next
from server.pages.layout import PageContext, esc, flash, forbidden, page
from server.rules import CityRules
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)
JsonObj = dict[str, Any]
NOTE_LABEL = {"handle": "task.note.handle", "reject": "task.note.reject", "evaluate": "task.note.evaluate"}
DANGER = {"reject", "dismiss"}


def _steps(ctx: PageContext, state: str) -> str:
    current = workflow.STEPS.index(state)
    items = []
    for n, step in enumerate(workflow.STEPS):
        css = "current" if n == current else "done" if n < current else ""
        aria = ' aria-current="step"' if n == current else ""
        items.append(f'<li class="{css}" data-step="{step}"{aria}>{esc(ctx.t["task.state." + step])}</li>')
    return f'<ol class="steps">{"".join(items)}</ol>'


def _line(ctx: PageContext, key: str, value: str) -> str:
    return f'<div><span class="meta">{esc(ctx.t[key])}{esc(ctx.t["sep"])}</span>{value}</div>'


def _summary(ctx: PageContext, rules: CityRules, task: JsonObj) -> str:
    t = ctx.t
    # Tasks the system wrote from a case read better in the page's language;
    # reports and hand-made tasks show what a person wrote.
    what = t.get(f'task.what.{task["kind"]}') if task["source"] == "case" else None
    lines = [f'<p class="what">{esc(what or task["summary"])}</p>']
    if task["unit_id"] is not None:
        place = f'{esc(task["building_name"] or "")} {esc(task["unit_number"] or "")}'
        lines.append(_line(ctx, "task.unit", f'<a id="unit-link" href="/c/units/{task["unit_id"]}">{place}</a>'
                                             f' <span class="meta">{esc(task["building_address"] or "")}</span>'))
    elif task["building_name"]:
        lines.append(_line(ctx, "task.unit", esc(f'{task["building_name"]} {task["building_address"] or ""}')))
    if task["grid_code"]:
        lines.append(_line(ctx, "task.grid", esc(f'{task["grid_name"]} ({task["grid_code"]})')))
    case = task.get("case")
    if case is not None:
        state = t.get(f"task.case_state.{case['state']}", case["state"])
        lines.append(_line(ctx, "task.case", esc(f'#{case["id"]} {kind_label(t, case["kind"])} · {state}')))
    lines.append(_line(ctx, "task.source", esc(t.get("task.source." + task["source"], task["source"]))))
    lines.append(_line(ctx, "task.assignee", esc(task["assignee_name"] or t["task.nobody"])))
    lines.append(_line(ctx, "task.created", esc(local(rules, task["created_at"]))))
    if task["due_at"] is not None:
        late = f' <span class="late" id="overdue">{esc(t["task.overdue"])}</span>' if task["overdue"] else ""
        lines.append(_line(ctx, "task.due", f'<span id="due">{esc(local(rules, task["due_at"]))}</span>{late}'))
    if task["evaluation"]:
        lines.append(_line(ctx, "task.evaluation", esc(f'{t["task.eval." + task["evaluation"]]} · '
                                                       f'{task["evaluation_note"] or ""}')))
    return f'<div class="card">{"".join(lines)}</div>'


def _note(ctx: PageContext, action: str, value: str, required: bool) -> str:
    label = ctx.t[NOTE_LABEL.get(action, "task.note")]
    req = " required" if required else ""
    return (f'<label for="note-{action}">{esc(label)}</label>'
            f'<textarea id="note-{action}" name="note" rows="3" maxlength="2000"{req}>{esc(value)}</textarea>')


def _form(ctx: PageContext, task: JsonObj, action: str, values: dict[str, str]) -> str:
    t = ctx.t
    typed = values.get("note", "") if values.get("action") == action else ""
    fields = ""
    if action in ("dispatch", "reassign"):
        people = [p for p in task["assignable"] if p["id"] != task["assignee_user_id"]]
        options = "".join(f'<option value="{p["id"]}">{esc(p["display_name"])}</option>' for p in people)
        fields = (f'<label for="assignee-{action}">{esc(t["task.assign_to"])}</label>'
                  f'<select id="assignee-{action}" name="assignee_user_id">{options}</select>')
        fields += _note(ctx, action, typed, False)
    elif action == "evaluate":
        radios = "".join(f'<label><input type="radio" name="evaluation" value="{e}"{" checked" if e == "good" else ""}>'
                         f'{esc(t["task.eval." + e])}</label>' for e in workflow.EVALUATIONS)
        fields = f'<div class="choices">{radios}</div>' + _note(ctx, action, typed, True)
    elif action == "dismiss":
        options = "".join(f'<option value="{r}">{esc(t["task.reason." + r])}</option>'
                          for r in workflow.DISMISS_REASONS)
        fields = (f'<label for="reason-dismiss">{esc(t["task.reason"])}</label>'
                  f'<select id="reason-dismiss" name="reason">{options}</select>' + _note(ctx, action, typed, False))
    elif action != "claim":
        fields = _note(ctx, action, typed, action in ("handle", "reject"))
    css = "danger" if action in DANGER else ""
    return (f'<form class="action" data-action="{action}" method="post" action="/c/tasks/{task["id"]}/{action}">'
            f'{ctx.csrf_field()}{fields}<p><button type="submit" class="{css}" name="go" value="{action}">'
            f'{esc(t["task.action." + action])}</button></p></form>')


def _event_label(t: dict[str, str], action: str) -> str:
    return t.get(f"task.action.{action}") or t.get(f"task.event.{action}") or action


def actor_label(t: dict[str, str], actor: str) -> str:
    """A non-person actor in words ("system:reconcile" is the sweep)."""
    kind = actor.partition(":")[0]
    return t.get(f"task.actor.{kind}", actor)


def _trail(ctx: PageContext, rules: CityRules, events: list[JsonObj]) -> str:
    t = ctx.t
    items = []
    for e in events:
        who = e["actor_name"] or actor_label(t, e["actor"])
        move = ""
        if e["from_state"] and e["to_state"] and e["from_state"] != e["to_state"]:
            move = f' · {esc(t["task.state." + e["from_state"]])} → {esc(t["task.state." + e["to_state"]])}'
        assignee = f' · {esc(t["task.assignee"])}{esc(t["sep"])}{esc(e["assignee_name"])}' \
            if e["assignee_name"] and e["action"] in ("dispatch", "claim", "reassign") else ""
        note = f'<div>{esc(e["note"])}</div>' if e["note"] else ""
        items.append(f'<li data-action="{esc(e["action"])}"><b>{esc(_event_label(t, e["action"]))}</b>{move}'
                     f'{assignee}<div class="meta">{esc(local(rules, e["at"]))} · {esc(who)}</div>{note}</li>')
    return f'<ol class="trail">{"".join(items)}</ol>'


def render(ctx: PageContext, request: web.Request, rules: CityRules, task: JsonObj, *,
           problem: str | None = None, values: dict[str, str] | None = None, status: int = 200) -> web.Response:
    t = ctx.t
    errors = f'<div class="errors" role="alert">{esc(problem)}</div>' if problem else ""
    forms = "".join(_form(ctx, task, a, values or {}) for a in task["allowed_actions"]) or \
        f'<p class="meta">{esc(t["task.no_actions"])}</p>'
    body = (f"<style>{CSS}</style>{flash(ctx, request)}{errors}"
            f'<div class="row"><b>{esc(kind_label(t, task["kind"]))}</b>{state_chip(t, task["state"])}</div>'
            f'<h2>{esc(t["task.steps"])}</h2>{_steps(ctx, task["state"])}'
            f'{_summary(ctx, rules, task)}'
            f'<h2>{esc(t["task.actions"])}</h2><div class="card" id="actions">{forms}</div>'
            f'<h2>{esc(t["task.trail"])}</h2><div class="card">{_trail(ctx, rules, task["events"])}</div>')
    return page(ctx, t["task.title"].format(id=task["id"]), body, status=status)


async def _detail(request: web.Request, ctx: PageContext, user: AuthUser, task_id: int) -> JsonObj:
    try:
        return await run_read(request, lambda conn: service.task_detail(conn, now(), user, task_id))
    except GridNotFound:
        raise page_not_found(ctx) from None
    except NotPermitted:
        raise web.HTTPForbidden(text=forbidden(ctx).text, content_type="text/html") from None


async def task_handler(request: web.Request) -> web.Response:
    ctx, user = grid_user(request)
    task = await _detail(request, ctx, user, int(request.match_info["id"]))
    return render(ctx, request, rules_of(request), task)


def message(t: dict[str, str], exc: Exception, state: str) -> str:
    """The refusal in the page's language: the common ones have texts of
    their own, the rest name the problem as the workflow put it."""
    if isinstance(exc, IllegalTransition):
        return t["task.err.moved_on"].format(state=t["task.state." + state])
    if isinstance(exc, NotPermitted):
        key = "task.err.four_eyes" if "four-eyes" in str(exc) else "task.err.not_yours"
        return t[key]
    if isinstance(exc, GridInputError):
        if exc.problem == "is required":
            label = t.get(f"task.field.{exc.field}", exc.field)
            return f'{label}{t["sep"]}{t["error.required"]}'
        if exc.field == "assignee":
            return t["task.err.assignee"]
        return t["task.refused"].format(detail=str(exc))
    return t["task.refused"].format(detail=str(exc))


def _input(form: dict[str, str]) -> service.ActionInput:
    raw = form.get("assignee_user_id", "").strip()
    try:
        assignee = int(raw) if raw else None
    except ValueError:
        raise GridInputError("assignee", "not a user") from None
    return service.ActionInput(assignee_user_id=assignee, note=form.get("note"),
                               evaluation=form.get("evaluation") or None, reason=form.get("reason") or None)


async def action_handler(request: web.Request) -> web.Response:
    ctx, user = grid_user(request)
    task_id, action = int(request.match_info["id"]), request.match_info["action"]
    form = await read_form(request)
    rules = rules_of(request)

    def write() -> None:
        with write_transaction(read(request)) as conn:
            service.apply_action(conn, now(), rules, user, task_id, action, _input(form))

    try:
        await asyncio.to_thread(write)
    except GridNotFound:
        raise page_not_found(ctx) from None
    except (GridInputError, NotPermitted, GridConflict) as exc:
        status = 400 if isinstance(exc, GridInputError) else 403 if isinstance(exc, NotPermitted) else 409
        task = await _detail(request, ctx, user, task_id)
        return render(ctx, request, rules, task, problem=message(ctx.t, exc, task["state"]),
                      values={**form, "action": action}, status=status)
    log.info("task %s: %s by %s", task_id, action, actor_of(user))
    back = form.get("back")
    target = safe_next(back) if back else f"/c/tasks/{task_id}"
    raise web.HTTPSeeOther(f"{target}?ok=task.{action}_ok")

