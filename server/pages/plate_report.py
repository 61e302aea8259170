"""``GET/POST /p/{token}/report``: anyone who scans a plate may report a
problem at the unit (a hazard, overcrowding, something suspicious) with an
optional photo. Input problems come back on the form with what was typed
(400, 413 too big, 415 not a JPEG/PNG photo, 429 too many reports with when
to try again, 503 no photo folder); a report becomes a task and the sender
gets a reference number."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from datetime import UTC, datetime

from aiohttp import web

from server.appkeys import ENGINE, SETTINGS
from server.db.models import REPORT_CATEGORIES
from server.media.errors import MediaTooLarge, MediaUnavailable, UnsupportedMedia
from server.media.photos import MAX_PHOTO_BYTES, Photo, process
from server.media.store import MediaStore, media_store
from server.media.uploads import text_fields, uploaded_files
from server.pages.forms import FormErrors, errors_box, input_field
from server.pages.layout import PageContext, context, esc, page
from server.pages.plate_public import Scanned, address_of, scan
from server.pages.scan_common import SCAN_CSS, scan_headers
from server.pages.state import PAGES
from server.plates.appkeys import PLATE_KEYS
from server.reports import limits
from server.reports.errors import RateLimited, ReportInvalid
from server.reports.service import MAX_DESCRIPTION, check_fields, submit_report
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)
_REFERENCE = re.compile(r"R\d{6,12}")


def _form(ctx: PageContext, scanned: Scanned, values: dict[str, str], errors: FormErrors | None) -> str:
    t = ctx.t
    chosen = values.get("category", "")
    choices = "".join(
        f'<label><input type="radio" name="category" value="{c}"{" checked" if c == chosen else ""} required>'
        f'{esc(t["report.category." + c])}</label>' for c in REPORT_CATEGORIES)
    problem = errors.fields.get("description") if errors else None
    description = (f'<label for="f-description">{esc(t["report.description"])}</label>'
                   f'<textarea id="f-description" name="description" maxlength="{MAX_DESCRIPTION}" required'
                   f'{" class=bad aria-invalid=true" if problem else ""}>{esc(values.get("description", ""))}'
                   f'</textarea><div class="hint">{esc(t["report.description_hint"])}</div>'
                   + (f'<div class="field-error" data-field="description">{esc(problem)}</div>' if problem else ""))
    photo_problem = errors.fields.get("photo") if errors else None
    photo = (f'<label for="f-photo">{esc(t["report.photo"])}</label>'
             f'<input id="f-photo" name="photo" type="file" accept="image/jpeg,image/png">'
             f'<div class="hint">{esc(t["report.photo_hint"].format(mb=MAX_PHOTO_BYTES // (1024 * 1024)))}</div>'
             + (f'<div class="field-error" data-field="photo">{esc(photo_problem)}</div>' if photo_problem else ""))
    category_problem = errors.fields.get("category") if errors else None
    return (f'{SCAN_CSS}<p class="address">{esc(address_of(scanned.unit))}</p>'
            f'<form class="card report" method="post" action="/p/{esc(scanned.token)}/report"'
            f' enctype="multipart/form-data" novalidate>{ctx.csrf_field()}{errors_box(ctx, errors)}'
            f'<label>{esc(t["report.category"])}</label><div class="choices">{choices}</div>'
            + (f'<div class="field-error" data-field="category">{esc(category_problem)}</div>'
               if category_problem else "")
            + description
            + input_field(ctx, "phone", value=values.get("phone", ""), kind="tel", errors=errors,
                          label=t["report.phone"], hint=t["report.phone_hint"], extra="autocomplete=tel")
            + photo
            + f'<p><button type="submit" class="big">{esc(t["report.submit"])}</button></p></form>')


def _page(ctx: PageContext, scanned: Scanned, values: dict[str, str], errors: FormErrors | None,
          status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    response = page(ctx, ctx.t["report.title"], _form(ctx, scanned, values, errors), status=status)
    if headers:
        response.headers.update(headers)
    return scan_headers(response)


def _invalid(ctx: PageContext, exc: ReportInvalid) -> FormErrors:
    t = ctx.t
    label = t.get(f"report.{exc.field}", exc.field)
    return FormErrors(fields={exc.field: f'{label}{t["sep"]}{t["report.problem." + exc.problem]}'})


def _wait_text(ctx: PageContext, exc: RateLimited) -> str:
    minutes = max(1, math.ceil(exc.retry_after_s / 60))
    return ctx.t[f"report.too_many.{exc.scope}"].format(minutes=minutes)


async def report_page(request: web.Request) -> web.Response:
    ctx = context(request)
    found = await scan(request, ctx)
    if isinstance(found, web.Response):
        return found
    reference = request.query.get("ref", "")
    if request.query.get("ok") == "reported_ok" and _REFERENCE.fullmatch(reference):
        t = ctx.t
        body = (f'{SCAN_CSS}<div class="flash report-done" role="status"><p>{esc(t["report.done"])}</p>'
                f'<p>{esc(t["report.reference"])}{esc(t["sep"])}<strong class="reference">{esc(reference)}'
                f'</strong></p></div><p class="meta">{esc(t["report.next"])}</p>'
                f'<a class="button big secondary" href="/p/{esc(found.token)}">{esc(t["back"])}</a>')
        return scan_headers(page(ctx, t["report.title"], body))
    return _page(ctx, found, {}, None)


async def report_submit(request: web.Request) -> web.Response:
    ctx = context(request)
    found = await scan(request, ctx)
    if isinstance(found, web.Response):
        return found
    t = ctx.t
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        return _page(ctx, found, {}, FormErrors(general=[t["report.body_too_large"]]), 413)
    except ValueError:
        return _page(ctx, found, {}, FormErrors(general=[t["report.bad_form"]]), 400)
    values = {k: v.strip() for k, v in text_fields(form).items() if k in ("category", "description", "phone")}
    try:
        fields = check_fields(values.get("category", ""), values.get("description", ""), values.get("phone", ""))
    except ReportInvalid as exc:
        return _page(ctx, found, values, _invalid(ctx, exc), 400)
    try:
        files = uploaded_files(form, "photo")[:1]
    except MediaTooLarge:
        return _page(ctx, found, values, FormErrors(fields={"photo": t["media.too_large"]}), 413)
    store: MediaStore | None = None
    if files:
        try:
            store = media_store(request.app[SETTINGS])
        except MediaUnavailable as exc:
            log.error("report photo refused: %s", exc)
            return _page(ctx, found, values, FormErrors(fields={"photo": t["media.unavailable"]}), 503)
    keyring = request.app[PLATE_KEYS].keyring
    digest = limits.client_digest(keyring, request.remote or "unknown") if keyring is not None else None
    engine, rules, unit_id = request.app[ENGINE], request.app[PAGES].rules, int(found.unit["id"])

    def too_many(exc: RateLimited) -> web.Response:
        return _page(ctx, found, values, FormErrors(general=[_wait_text(ctx, exc)]), 429,
                     {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))})

    def precheck() -> None:
        # Before the photo is decoded: a client over its limit costs no CPU.
        with engine.connect() as conn:
            limits.check(conn, datetime.now(UTC), unit_id, digest)

    try:
        await asyncio.to_thread(precheck)
    except RateLimited as exc:
        return too_many(exc)
    photo: Photo | None = None
    if files:
        try:
            photo = await asyncio.to_thread(process, files[0])
        except UnsupportedMedia:
            return _page(ctx, found, values, FormErrors(fields={"photo": t["media.unsupported"]}), 415)
        except MediaTooLarge:
            return _page(ctx, found, values, FormErrors(fields={"photo": t["media.too_large"]}), 413)

    def write() -> str:
        now = datetime.now(UTC)
        with write_transaction(engine) as conn:
            return submit_report(conn, now, rules, fields, unit_id=unit_id, plate_id=found.plate_id,
                                 client_digest=digest, photo=photo, store=store).reference

    try:
        reference = await asyncio.to_thread(write)
    except RateLimited as exc:
        return too_many(exc)
    log.info("unit %s: problem report %s (%s)", unit_id, reference, fields.category)
    raise web.HTTPSeeOther(f"/p/{found.token}/report?ok=reported_ok&ref={reference}",
                           headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})

