"""``GET/POST /c/units/{unit_id}/patrol``: recording a patrol in a few taps
on a phone: how many people were there, which registered occupants were
seen, the checklist (fire safety, overcrowding, unregistered persons,
pledge; each ok / problem / not applicable, ok by default), notes and up to
four photos. Saved by server/patrols/service.record_patrol, then back to the
unit page with ``?ok=patrol_ok``."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from server.appkeys import ENGINE, SETTINGS
from server.auth.policy import AuthUser, actor_of
from server.media.errors import MediaTooLarge, MediaUnavailable, UnsupportedMedia
from server.media.photos import MAX_PHOTO_BYTES, Photo, process
from server.media.store import MediaStore, media_store
from server.media.uploads import Form, uploaded_files
from server.pages.forms import FormErrors, errors_box
from server.pages.guard import page_user
from server.pages.layout import PageContext, esc, not_found, page
from server.pages.scan_common import SCAN_CSS, WORK_ROLES
from server.pages.state import PAGES
from server.patrols.errors import PatrolInvalid, UnitNotFound
from server.patrols.service import CHECK_VALUES, CHECKLIST_ITEMS, MAX_NOTES, MAX_PHOTOS, PatrolInput, record_patrol
from server.patrols.unit_view import registrations_of, unit_row
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)
Row = dict[str, Any]


def _checklist(ctx: PageContext, values: dict[str, str]) -> str:
    t, out = ctx.t, []
    for item in CHECKLIST_ITEMS:
        chosen = values.get(item, "ok")
        options = "".join(
            f'<label><input type="radio" name="{item}" value="{v}"{" checked" if v == chosen else ""}>'
            f'{esc(t["patrol.value." + v.replace("/", "")])}</label>' for v in CHECK_VALUES)
        out.append(f'<fieldset class="check-item" data-item="{item}" style="border:0;padding:0;margin:0">'
                   f'<legend class="item-name">{esc(t["patrol.item." + item])}</legend>'
                   f'<div class="choices">{options}</div></fieldset>')
    return "".join(out)


def _form(ctx: PageContext, unit: Row, occupants: list[Row], values: dict[str, Any], errors: FormErrors | None
          ) -> str:
    t, unit_id = ctx.t, unit["id"]
    seen = set(values.get("seen", []))
    people = "".join(
        f'<label><input type="checkbox" name="seen" value="{r["person_id"]}"'
        f'{" checked" if str(r["person_id"]) in seen else ""}>{esc(r["name"])} '
        f'<span class="meta">{esc(r["id_masked"] or "")}</span></label>' for r in occupants
    ) or f'<span class="meta">{esc(t["no_occupants"])}</span>'
    problem = (errors.fields.get("photos") if errors else None)
    return (f'{SCAN_CSS}<p class="address">{esc(unit["address"] or unit["building_name"])} {esc(unit["number"])}</p>'
            f'<form class="card patrol-form" method="post" action="/c/units/{unit_id}/patrol"'
            f' enctype="multipart/form-data" novalidate>{ctx.csrf_field()}{errors_box(ctx, errors)}'
            f'<label for="f-occupants_observed">{esc(t["patrol.occupants_observed"])}</label>'
            f'<input id="f-occupants_observed" name="occupants_observed" type="number" min="0" max="200"'
            f' inputmode="numeric" value="{esc(values.get("occupants_observed", ""))}">'
            f'<label>{esc(t["patrol.seen"])}</label><div class="choices seen">{people}</div>'
            f'<h3>{esc(t["patrol.checklist"])}</h3>{_checklist(ctx, values)}'
            f'<label for="f-notes">{esc(t["patrol.notes"])}</label>'
            f'<textarea id="f-notes" name="notes" maxlength="{MAX_NOTES}">{esc(values.get("notes", ""))}</textarea>'
            f'<label for="f-photos">{esc(t["patrol.photos"])}</label>'
            f'<input id="f-photos" name="photos" type="file" accept="image/jpeg,image/png" multiple>'
            f'<div class="hint">{esc(t["patrol.photos_hint"].format(n=MAX_PHOTOS, mb=MAX_PHOTO_BYTES // 1048576))}'
            f'</div>' + (f'<div class="field-error" data-field="photos">{esc(problem)}</div>' if problem else "")
            + f'<p><button type="submit" class="big save-patrol">{esc(t["patrol.save"])}</button></p></form>'
            f'<p><a href="/c/units/{unit_id}">{esc(t["back"])}</a></p>')


async def _load(request: web.Request, ctx: PageContext, user: AuthUser, unit_id: int
                ) -> tuple[Row, list[Row]] | web.Response:
    def load() -> tuple[str, Row | None, list[Row]]:
        with request.app[ENGINE].connect() as conn:
            unit = unit_row(conn, unit_id)
            if unit is None:
                return "missing", None, []
            # The route policy has checked the unit is in the caller's scope.
            return "ok", unit, [r for r in registrations_of(conn, unit_id) if r["status"] == "active"]

    verdict, unit, occupants = await asyncio.to_thread(load)
    if unit is None:
        return not_found(ctx)
    return unit, occupants


def _title(ctx: PageContext, unit: Row) -> str:
    return f'{ctx.t["patrol.title"]} · {unit["number"]}'


async def patrol_page(request: web.Request) -> web.Response:
    ctx, user = page_user(request, *WORK_ROLES)
    loaded = await _load(request, ctx, user, int(request.match_info["id"]))
    if isinstance(loaded, web.Response):
        return loaded
    unit, occupants = loaded
    return page(ctx, _title(ctx, unit), _form(ctx, unit, occupants, {}, None))


def _values(form: Form) -> dict[str, Any]:
    values: dict[str, Any] = {k: form.get(k) for k in ("occupants_observed", "notes", *CHECKLIST_ITEMS)
                              if isinstance(form.get(k), str)}
    values["seen"] = [v for v in form.getall("seen", []) if isinstance(v, str)]
    return values


def _input(values: dict[str, Any], photos: list[Photo]) -> PatrolInput:
    raw = str(values.get("occupants_observed") or "").strip()
    if raw and not raw.isdigit():
        raise PatrolInvalid("occupants_observed", "range")
    seen = values.get("seen", [])
    if any(not s.isdigit() for s in seen):
        raise PatrolInvalid("seen", "not_registered")
    notes = str(values.get("notes") or "").strip()
    return PatrolInput(occupants_observed=int(raw) if raw else None, seen_person_ids=[int(s) for s in seen],
                       checklist={item: str(values.get(item) or "ok") for item in CHECKLIST_ITEMS},
                       notes=notes or None, photos=photos)


def _invalid(ctx: PageContext, exc: PatrolInvalid) -> FormErrors:
    t = ctx.t
    label = t.get(f"patrol.{exc.field}", t.get(f"patrol.item.{exc.field}", exc.field))
    return FormErrors(fields={exc.field: f'{label}{t["sep"]}{t["patrol.problem." + exc.problem]}'})


async def patrol_submit(request: web.Request) -> web.Response:
    ctx, user = page_user(request, *WORK_ROLES)
    unit_id = int(request.match_info["id"])
    loaded = await _load(request, ctx, user, unit_id)
    if isinstance(loaded, web.Response):
        return loaded
    unit, occupants = loaded
    t = ctx.t

    def again(errors: FormErrors, status: int, values: dict[str, Any]) -> web.Response:
        return page(ctx, _title(ctx, unit), _form(ctx, unit, occupants, values, errors), status=status)

    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        return again(FormErrors(general=[t["report.body_too_large"]]), 413, {})
    except ValueError:
        return again(FormErrors(general=[t["report.bad_form"]]), 400, {})
    values = _values(form)
    try:
        files = uploaded_files(form, "photos")
        if len(files) > MAX_PHOTOS:
            raise PatrolInvalid("photos", "too_many")
        _input(values, [])  # the fields, before any photo is decoded
    except MediaTooLarge:
        return again(FormErrors(fields={"photos": t["media.too_large"]}), 413, values)
    except PatrolInvalid as exc:
        return again(_invalid(ctx, exc), 400, values)
    store: MediaStore | None = None
    photos: list[Photo] = []
    if files:
        try:
            store = media_store(request.app[SETTINGS])
        except MediaUnavailable as exc:
            log.error("patrol photos refused: %s", exc)
            return again(FormErrors(fields={"photos": t["media.unavailable"]}), 503, values)
        try:
            photos = await asyncio.to_thread(lambda: [process(raw) for raw in files])
        except UnsupportedMedia:
            return again(FormErrors(fields={"photos": t["media.unsupported"]}), 415, values)
        except MediaTooLarge:
            return again(FormErrors(fields={"photos": t["media.too_large"]}), 413, values)
    data = _input(values, photos)
    engine, rules = request.app[ENGINE], request.app[PAGES].rules

    def write() -> int:
        now = datetime.now(UTC)
        with write_transaction(engine) as conn:
            return record_patrol(conn, now, user.id, actor_of(user), rules, unit_id, data, store).patrol_id

    try:
        patrol_id = await asyncio.to_thread(write)
    except PatrolInvalid as exc:
        return again(_invalid(ctx, exc), 400, values)
    except UnitNotFound:
        return not_found(ctx)
    log.info("unit %s: patrol %s by %s", unit_id, patrol_id, actor_of(user))
    raise web.HTTPSeeOther(f"/c/units/{unit_id}?ok=patrol_ok")
