"""``GET /c/units/{unit_id}``: what a coordinator (or an administrator) sees
after scanning a plate: the unit, who is registered (ID numbers masked),
pending self-declarations to confirm or reject, what the doors saw lately,
open cases to resolve or escalate, open tasks, the last patrols and when the
next is due. Read by server/patrols/unit_view.load_unit_view.

The page sends ``Server-Timing: db;dur=…, render;dur=…, total;dur=…``: db
and render are measured inside the worker thread (so they exclude waiting
for a thread), total from the handler's entry to the response.

Its forms (POST, CSRF) come back here with ``?ok=…``:
``/c/units/{id}/cases/{case_id}/resolve`` (resolution, note),
``/c/units/{id}/cases/{case_id}/escalate`` (note),
``/c/units/{id}/registrations/{reg_id}/confirm`` and ``…/reject`` (reason)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from aiohttp import web

from server.access.registry import Outcome
from server.access.routes import ACCESS
from server.appkeys import ENGINE
from server.auth.policy import AuthUser, actor_of
from server.db.models import cases, credentials, registrations
from server.db.read_pool import read_only, with_retry
from server.grid.cases import escalate_case
from server.pages.camera_alerts import load_camera_alerts, render_camera_section
from server.pages.dashboard import event_words
from server.pages.forms import FormErrors, errors_box, read_form, text
from server.pages.guard import page_user
from server.pages.layout import PageContext, esc, flash, forbidden, grade_chip, not_found, page
from server.pages.masks import mask_card, mask_phone
from server.pages.scan_common import SCAN_CSS, WORK_ROLES, day, minute
from server.pages.state import PAGES
from server.patrols.service import CHECKLIST_ITEMS
from server.patrols.unit_view import DOOR_EVENT_DAYS, UnitView, load_unit_view
from server.reconcile.cases import MANUAL_RESOLUTIONS, resolve_case
from server.registry import service as registry
from server.registry.queries import declared_fields
from server.web.errors import Conflict, InvalidInput, NotFound
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)
Row = dict[str, Any]
# The unit page's reads and rendering run in a pool of their own, one thread
# per core: with every request in flight at once (asyncio's default pool has
# cpu + 4 threads) each one's queries and rendering would share the cores and
# the GIL with all the others and take several times longer; a request that
# waits for a thread here waits in the queue instead, and the thread it gets
# works at nearly full speed. Server-Timing's db and render are that work;
# total includes the wait. (bench/patrol.py, 2 cores, 100 clients: 2 threads
# gave p99 41 ms at 120 pages/s, 3 threads 57 ms at 138 pages/s.)
UNIT_PAGE_THREADS = max(2, min(8, os.cpu_count() or 2))
UNIT_PAGE_POOL = ThreadPoolExecutor(max_workers=UNIT_PAGE_THREADS, thread_name_prefix="unit-page")


# --------------------------------------------------------------------------- rendering


def _unit_card(ctx: PageContext, view: UnitView, zone: ZoneInfo) -> str:
    t, u = ctx.t, view.unit
    due = (f'<span class="{"overdue" if view.patrol_overdue else ""} next-patrol">{day(view.next_patrol_due, zone)}'
           f'{esc(t["unit.overdue"]) if view.patrol_overdue else ""}</span>')
    # The landlord's phone is masked like every phone on a page; a coordinator
    # on the spot still calls with one tap (the tel: link carries the number).
    phone = u["landlord_phone"]
    call = (f'<a class="call" href="tel:{esc("".join(ch for ch in phone if ch.isdigit() or ch == "+"))}">'
            f'{esc(mask_phone(phone))}</a>') if phone else ""
    landlord = " · ".join(x for x in (esc(u["landlord_name"] or ""), call) if x)
    return (f'<div class="card unit-summary" data-unit="{u["id"]}">'
            f'<p class="address">{esc(u["address"] or u["building_name"])} {esc(u["number"])}</p>'
            f'<div class="row">{grade_chip(t, u["grade"])}'
            f'<span class="stat">{esc(t["capacity"])} <b>{u["capacity"]}</b></span>'
            f'<span class="stat">{esc(t["occupants"])} <b class="occupant-count">{len(view.occupants)}</b></span>'
            f'<span class="stat">{esc(t["area_m2"])} <b>{u["area_m2"]:g}</b></span></div>'
            f'<div class="meta">{esc(t["unit.grid"])}{esc(t["sep"])}{esc(u["grid_name"] or "—")}'
            + (f' · {esc(t["unit.landlord"])}{esc(t["sep"])}{landlord}' if landlord else "")
            + f'</div><div class="meta">{esc(t["unit.last_patrol"])}{esc(t["sep"])}'
            f'{day(u["last_patrol_at"], zone) or esc(t["unit.never"])} · {esc(t["unit.next_patrol"])}{esc(t["sep"])}'
            f'{due}</div>'
            f'<a class="button big record-patrol" href="/c/units/{u["id"]}/patrol">{esc(t["unit.record_patrol"])}</a>'
            f'</div>')


def _occupants(ctx: PageContext, view: UnitView, zone: ZoneInfo) -> str:
    t = ctx.t
    if not view.occupants:
        return f'<div class="card meta">{esc(t["no_occupants"])}</div>'
    items = "".join(
        f'<li class="occupant" data-person="{r["person_id"]}"><b class="name">{esc(r["name"])}</b> '
        f'<span class="id-masked">{esc(r["id_masked"] or "")}</span><div class="meta">{esc(t["unit.since"])}'
        f'{esc(t["sep"])}{day(r["valid_from"], zone)} · {esc(t.get("source." + r["source"], r["source"]))}</div></li>'
        for r in view.occupants)
    return f'<div class="card"><ul class="plain occupants">{items}</ul></div>'


def _declared_name(ctx: PageContext, row: Row, declared: dict[int, Row]) -> str:
    """The name typed with the registration, when it is not the person's
    recorded one: a coordinator verifying a move compares both with the
    identity card."""
    name = (declared.get(row["id"]) or {}).get("name")
    if not name or name == row["name"]:
        return ""
    t = ctx.t
    return f'<div class="meta declared-name">{esc(t["move.declared_name"])}{esc(t["sep"])}{esc(name)}</div>'


def _pending(ctx: PageContext, view: UnitView, zone: ZoneInfo, declared: dict[int, Row] | None = None) -> str:
    t, unit_id = ctx.t, view.unit["id"]
    if not view.pending:
        return ""
    out = [f'<h2>{esc(t["declarations"])}</h2>']
    for r in view.pending:
        base = f'/c/units/{unit_id}/registrations/{r["id"]}'
        # A move awaiting verification (server/registry/service.is_move):
        # confirming it ends the person's registration elsewhere.
        note = (f'<p class="meta move-note">{esc(t["move.verify_note"])}</p>'
                if registry.is_move(r["source"]) else "")
        out.append(
            f'<div class="card declaration" data-registration="{r["id"]}"><b class="name">{esc(r["name"])}</b> '
            f'<span class="id-masked">{esc(r["id_masked"] or "")}</span>'
            f'{_declared_name(ctx, r, declared or {})}'
            f'<div class="meta">{esc(t["arrived"])}{esc(t["sep"])}{day(r["valid_from"], zone)}</div>{note}'
            f'<form method="post" action="{base}/confirm">{ctx.csrf_field()}'
            f'<button type="submit" class="confirm">{esc(t["confirm"])}</button></form>'
            f'<details><summary>{esc(t["reject"])}</summary><form method="post" action="{base}/reject">'
            f'{ctx.csrf_field()}<label for="reject-{r["id"]}">{esc(t["reject_reason"])}</label>'
            f'<input id="reject-{r["id"]}" name="reason" required maxlength="32">'
            f'<p><button type="submit" class="danger reject">{esc(t["reject"])}</button></p></form></details></div>')
    return "".join(out)


def _who(ctx: PageContext, row: Row, cards: dict[int, str]) -> str:
    """A person by name; a card nobody is registered with by its mask, so two
    such cards read apart without showing a database id."""
    if row["person_id"] is not None:
        return esc(row["name"] or ctx.t["unit.someone"])
    card = mask_card(cards.get(row["credential_id"]))
    return esc(ctx.t["unit.unregistered_card"].format(card=card).strip())


def card_values(conn: sa.Connection, view: UnitView) -> dict[int, str]:
    """The numbers of the unregistered cards among the sightings (masked when shown)."""
    ids = {r["credential_id"] for r in view.sightings if r["person_id"] is None and r["credential_id"] is not None}
    if not ids:
        return {}
    query = sa.select(credentials.c.id, credentials.c.value).where(credentials.c.id.in_(ids))
    return {int(i): str(v) for i, v in conn.execute(query).tuples()}


def _sightings(ctx: PageContext, view: UnitView, zone: ZoneInfo, cards: dict[int, str]) -> str:
    t = ctx.t
    if not view.sightings:
        return f'<div class="card meta">{esc(t["unit.no_evidence"])}</div>'
    rows = "".join(
        f'<li class="sighting" data-subject="{esc(r["subject"])}"><b>{_who(ctx, r, cards)}</b> '
        + (f'<span class="badge ok">{esc(t["unit.registered"])}</span>' if r["registered"]
           else f'<span class="badge warn">{esc(t["unit.not_registered"])}</span>')
        + f'<div class="meta">{esc(t["ev.first_seen_at"])}{esc(t["sep"])}{day(r["first_seen_at"], zone)} · '
        f'{esc(t["ev.last_seen_at"])}{esc(t["sep"])}{minute(r["last_seen_at"], zone)} · '
        f'{esc(t["ev.days_seen"])}{esc(t["sep"])}{r["days_seen"]}</div></li>'
        for r in view.sightings)
    return f'<div class="card"><ul class="plain sightings">{rows}</ul></div>'


def _door_events(ctx: PageContext, view: UnitView, zone: ZoneInfo) -> str:
    if not view.door_events:
        return ""
    t = ctx.t
    rows = "".join(
        f'<li class="door-event"><b>{minute(r["occurred_at"], zone)}</b> {esc(r["door"] or r["device"])} · '
        f'{esc(event_words(t, r)[0])}</li>' for r in view.door_events)
    return f'<h3>{esc(t["unit.door_events"].format(days=DOOR_EVENT_DAYS))}</h3><div class="card"><ul class="plain door-events">{rows}</ul></div>'


def _cases(ctx: PageContext, view: UnitView, zone: ZoneInfo) -> str:
    t, unit_id = ctx.t, view.unit["id"]
    if not view.cases:
        return f'<div class="card meta">{esc(t["no_cases"])}</div>'
    out = []
    for c in view.cases:
        base = f'/c/units/{unit_id}/cases/{c["id"]}'
        person = f' · {esc(c["name"])}' if c["name"] else ""
        resolutions = "".join(f'<option value="{r}">{esc(t["unit.resolution." + r])}</option>'
                              for r in MANUAL_RESOLUTIONS)
        resolve = "" if c["kind"] == "presumed_departure" else (
            f'<details><summary>{esc(t["unit.resolve"])}</summary><form method="post" action="{base}/resolve">'
            f'{ctx.csrf_field()}<label for="res-{c["id"]}">{esc(t["unit.resolution"])}</label>'
            f'<select id="res-{c["id"]}" name="resolution">{resolutions}</select>'
            f'<label for="rnote-{c["id"]}">{esc(t["unit.note"])}</label>'
            f'<input id="rnote-{c["id"]}" name="note" maxlength="2000">'
            f'<p><button type="submit" class="resolve">{esc(t["unit.resolve"])}</button></p></form></details>')
        out.append(
            f'<div class="card case" data-case="{c["id"]}"><h3>{esc(t.get("case." + c["kind"], c["kind"]))}{person}</h3>'
            f'<div class="meta">{esc(t["case.opened"].format(at=day(c["opened_at"], zone)))} · '
            f'{esc(t.get("case.state." + c["state"], c["state"]))}</div>{resolve}'
            f'<details><summary>{esc(t["unit.escalate"])}</summary><form method="post" action="{base}/escalate">'
            f'{ctx.csrf_field()}<label for="enote-{c["id"]}">{esc(t["unit.note"])}</label>'
            f'<input id="enote-{c["id"]}" name="note" maxlength="2000">'
            f'<p><button type="submit" class="secondary escalate">{esc(t["unit.escalate"])}</button></p></form>'
            f'</details></div>')
    return "".join(out)


def _tasks(ctx: PageContext, view: UnitView, zone: ZoneInfo) -> str:
    t = ctx.t
    if not view.tasks:
        return f'<div class="card meta">{esc(t["unit.no_tasks"])}</div>'
    rows = "".join(
        f'<li class="task" data-task="{r["id"]}"><a href="/c/tasks/{r["id"]}">#{r["id"]} '
        f'{esc(t.get("unit.task_kind." + r["kind"], t.get("case." + r["kind"], r["kind"])))}</a> '
        f'<span class="badge">{esc(t.get("unit.task_state." + r["state"], r["state"]))}</span>'
        f'<div class="meta">{esc(t["unit.due"])}{esc(t["sep"])}{day(r["due_at"], zone)}</div></li>'
        for r in view.tasks)
    return f'<div class="card"><ul class="plain tasks">{rows}</ul></div>'


def _checklist_words(ctx: PageContext, checklist: dict[str, str]) -> str:
    t = ctx.t
    parts = []
    for item in CHECKLIST_ITEMS:
        value = checklist.get(item, "ok")
        cls = "warn" if value == "problem" else ("ok" if value == "ok" else "")
        parts.append(f'<span class="badge {cls} check-{item}" data-value="{esc(value)}">{esc(t["patrol.item." + item])}'
                     f' {esc(t["patrol.value." + value.replace("/", "")])}</span>')
    return " ".join(parts)


def _patrols(ctx: PageContext, view: UnitView, zone: ZoneInfo) -> str:
    t = ctx.t
    if not view.patrols:
        return f'<div class="card meta">{esc(t["unit.no_patrols"])}</div>'
    out = []
    for p in view.patrols:
        photos = "".join(f'<a href="/media/{a}"><img src="/media/{a}" alt="{esc(t["patrol.photo"])}" loading="lazy">'
                         f'</a>' for a in p["attachment_ids"] or [])
        observed = ("" if p["occupants_observed"] is None else
                    f' · {esc(t["patrol.occupants_observed"])}{esc(t["sep"])}{p["occupants_observed"]}')
        out.append(
            f'<div class="card patrol" data-patrol="{p["id"]}"><div><b>{minute(p["at"], zone)}</b> · {esc(p["by"])}'
            f'{observed}</div><div class="checklist">{_checklist_words(ctx, p["checklist"] or {})}</div>'
            + (f'<p class="notes">{esc(p["notes"])}</p>' if p["notes"] else "")
            + (f'<div class="photos">{photos}</div>' if photos else "") + '</div>')
    return "".join(out)


def render_unit(ctx: PageContext, view: UnitView, zone: ZoneInfo, flash_html: str,
                errors: FormErrors | None = None, cards: dict[int, str] | None = None,
                declared: dict[int, Row] | None = None) -> str:
    t = ctx.t
    return (f'{SCAN_CSS}{flash_html}{errors_box(ctx, errors)}{_unit_card(ctx, view, zone)}'
            f'<h2>{esc(t["registered_occupants"])}</h2>{_occupants(ctx, view, zone)}'
            f'{_pending(ctx, view, zone, declared)}'
            f'<h2>{esc(t["unit.evidence"])}</h2>{_sightings(ctx, view, zone, cards or {})}{_door_events(ctx, view, zone)}'
            f'<h2>{esc(t["open_cases"])}</h2>{_cases(ctx, view, zone)}'
            f'<h2>{esc(t["unit.open_tasks"])}</h2>{_tasks(ctx, view, zone)}'
            f'<h2>{esc(t["unit.patrols"])}</h2>{_patrols(ctx, view, zone)}')


def unit_title(ctx: PageContext, view: UnitView) -> str:
    return f'{ctx.t["unit"]} {view.unit["number"]} · {view.unit["building_name"]}'


# --------------------------------------------------------------------------- handlers


async def show_unit(request: web.Request, ctx: PageContext, user: AuthUser, unit_id: int, *,
                    errors: FormErrors | None = None, status: int = 200, started: float | None = None
                    ) -> web.Response:
    started = time.perf_counter() if started is None else started
    rules = request.app[PAGES].rules
    zone = rules.zone
    flash_html = flash(ctx, request)

    cards: dict[int, str] = {}
    declared: dict[int, Row] = {}
    camera: list[Row] = []

    def read() -> tuple[UnitView | None, str]:
        with read_only(request.app) as conn:
            view = load_unit_view(conn, unit_id, datetime.now(UTC), rules)
            if view is not None:
                cards.update(card_values(conn, view))
                declared.update(declared_fields(conn, [int(r["id"]) for r in view.pending]))
                camera.extend(load_camera_alerts(conn, int(view.unit["building_id"])))
            # The route policy has checked the unit is in the caller's scope
            # (server/auth/enforce.py) before this handler ran.
            return view, "missing" if view is None else "ok"

    def work() -> tuple[str, web.Response | None, float, float]:
        t0 = time.perf_counter()
        view, verdict = with_retry(read)
        t1 = time.perf_counter()
        response = None
        if view is not None and verdict == "ok":
            body = render_unit(ctx, view, zone, flash_html, errors, cards, declared)
            response = page(ctx, unit_title(ctx, view), body + render_camera_section(ctx, camera, zone),
                            status=status)
        return verdict, response, t1 - t0, time.perf_counter() - t1

    verdict, response, db_s, render_s = await asyncio.get_running_loop().run_in_executor(UNIT_PAGE_POOL, work)
    if verdict == "missing":
        return not_found(ctx)
    if verdict == "forbidden" or response is None:
        return forbidden(ctx)
    total_s = time.perf_counter() - started
    response.headers["Server-Timing"] = (f"db;dur={db_s * 1000:.2f}, render;dur={render_s * 1000:.2f}, "
                                         f"total;dur={total_s * 1000:.2f}")
    return response


async def unit_handler(request: web.Request) -> web.Response:
    started = time.perf_counter()
    ctx, user = page_user(request, *WORK_ROLES)
    return await show_unit(request, ctx, user, int(request.match_info["id"]), started=started)


async def _unit_of(request: web.Request, unit_id: int, table: sa.Table, row_id: int
                   ) -> str:
    """"ok" when the case or registration belongs to the unit, "missing"
    otherwise. The route policy has checked both are in the caller's scope;
    this checks they belong together."""

    def check() -> str:
        with request.app[ENGINE].connect() as conn:
            row = conn.execute(sa.select(table.c.unit_id).where(table.c.id == row_id)).first()
            return "ok" if row is not None and row.unit_id == unit_id else "missing"

    return await asyncio.to_thread(check)


async def _guarded(request: web.Request, table: sa.Table, key: str
                   ) -> tuple[PageContext, AuthUser, int, int] | web.Response:
    ctx, user = page_user(request, *WORK_ROLES)
    unit_id, row_id = int(request.match_info["id"]), int(request.match_info[key])
    verdict = await _unit_of(request, unit_id, table, row_id)
    if verdict == "missing":
        return not_found(ctx)
    return ctx, user, unit_id, row_id


def _done(unit_id: int, ok: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/c/units/{unit_id}?ok={ok}")


def _problem(ctx: PageContext, exc: Exception) -> FormErrors:
    return FormErrors(general=[ctx.t["error.conflict"].format(detail=str(exc))])


async def _write(request: web.Request, operation: Callable[[sa.Connection, datetime], object]) -> None:
    def run() -> None:
        with write_transaction(request.app[ENGINE]) as conn:
            operation(conn, datetime.now(UTC))

    await asyncio.to_thread(run)


async def resolve_handler(request: web.Request) -> web.Response:
    guarded = await _guarded(request, cases, "case_id")
    if isinstance(guarded, web.Response):
        return guarded
    ctx, user, unit_id, case_id = guarded
    form = await read_form(request)
    resolution, note = text(form, "resolution"), text(form, "note") or None
    if resolution not in MANUAL_RESOLUTIONS:
        errors = FormErrors(general=[f'{ctx.t["unit.resolution"]}{ctx.t["sep"]}{ctx.t["error.required"]}'])
        return await show_unit(request, ctx, user, unit_id, errors=errors, status=400)
    try:
        await _write(request, lambda conn, now: resolve_case(conn, now, actor_of(user), case_id,
                                                             resolution=resolution, note=note))
    except InvalidInput as exc:
        return await show_unit(request, ctx, user, unit_id, errors=_problem(ctx, exc), status=400)
    except (Conflict, NotFound) as exc:
        return await show_unit(request, ctx, user, unit_id, errors=_problem(ctx, exc), status=409)
    raise _done(unit_id, "case_resolved_ok")


async def escalate_handler(request: web.Request) -> web.Response:
    guarded = await _guarded(request, cases, "case_id")
    if isinstance(guarded, web.Response):
        return guarded
    ctx, user, unit_id, case_id = guarded
    form = await read_form(request)
    note = text(form, "note") or None
    rules = request.app[PAGES].rules
    try:
        await _write(request, lambda conn, now: escalate_case(conn, now, actor_of(user), rules, case_id, note))
    except InvalidInput as exc:
        return await show_unit(request, ctx, user, unit_id, errors=_problem(ctx, exc), status=400)
    except (Conflict, NotFound) as exc:
        return await show_unit(request, ctx, user, unit_id, errors=_problem(ctx, exc), status=409)
    raise _done(unit_id, "case_escalated_ok")


async def _registration_action(request: web.Request, ok: str,
                               operation: Callable[[AuthUser, int, dict[str, str]], Callable[..., Outcome]]
                               ) -> web.Response:
    guarded = await _guarded(request, registrations, "reg_id")
    if isinstance(guarded, web.Response):
        return guarded
    ctx, user, unit_id, reg_id = guarded
    form = await read_form(request)
    try:
        # Through the access service, so allowlist changes reach the gateways.
        await request.app[ACCESS].apply(operation(user, reg_id, form))
    except InvalidInput as exc:
        return await show_unit(request, ctx, user, unit_id, errors=_problem(ctx, exc), status=400)
    except (Conflict, NotFound) as exc:
        return await show_unit(request, ctx, user, unit_id, errors=_problem(ctx, exc), status=409)
    raise _done(unit_id, ok)


async def confirm_handler(request: web.Request) -> web.Response:
    """The coordinator verifies at the door: confirming ends the person's
    registration elsewhere, if any (a move; its cards are revoked and its
    landlord sees the tenant moved out, not where to)."""
    return await _registration_action(
        request, "confirmed_ok",
        lambda user, reg_id, _form: lambda conn, now: registry.confirm_registration(
            conn, now, actor_of(user), reg_id, user_id=user.id, end_previous=True,
            scope=registry.Scope.of(user.role, user.id)))


async def reject_handler(request: web.Request) -> web.Response:
    return await _registration_action(
        request, "rejected_ok",
        lambda user, reg_id, form: lambda conn, now: registry.reject_registration(
            conn, now, actor_of(user), reg_id, reason=(text(form, "reason") or "")[:32]))
