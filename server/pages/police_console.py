"""GET /police, POST /police/person, POST /police/address: the officers'
console for single look-ups on a phone. It runs exactly the API's calls
(server/police/context.run_call): the same scopes, purposes, limits and
audit entries; it only reads a form instead of JSON and shows the answer
to a person."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from server.pages.forms import id_number_message, read_form, text
from server.pages.guard import page_user
from server.pages.layout import PageContext, esc, when
from server.pages.layout import page as render_page
from server.police.checks import address_check, person_check
from server.police.context import run_call
from server.police.purposes import MATCH, OCCUPANTS, PURPOSES
from server.registry.appkeys import RULES

PURPOSE_FIELDS = ("purpose", "legal_basis", "case_ref", "badge")
# An API field as the form names it.
FORM_FIELD = {"purpose.code": "purpose", "purpose.legal_basis": "legal_basis", "purpose.case_ref": "case_ref",
              "purpose.badge": "badge", "purpose": "purpose", "id_number": "id_number",
              "building_code": "building_code", "unit_number": "unit_number", "building": "building_code"}


def _purpose_of(form: dict[str, str]) -> dict[str, Any]:
    purpose: dict[str, Any] = {"code": text(form, "purpose"), "legal_basis": text(form, "legal_basis"),
                               "case_ref": text(form, "case_ref")}
    if text(form, "badge"):
        purpose["badge"] = text(form, "badge")
    return purpose


def _select(ctx: PageContext, chosen: str) -> str:
    options = ['<option value="">—</option>']
    for code, kind in PURPOSES.items():
        label = kind.zh if ctx.lang == "zh" else kind.en
        selected = " selected" if code == chosen else ""
        options.append(f'<option value="{esc(code)}"{selected}>{esc(label)}</option>')
    return (f'<label for="f-purpose">{esc(ctx.t["police.purpose"])}</label>'
            f'<select id="f-purpose" name="purpose" required>{"".join(options)}</select>')


def _field(ctx: PageContext, name: str, form: dict[str, str], errors: dict[str, str], *, required: bool = True,
           hint: str | None = None, extra: str = "") -> str:
    problem = errors.get(name)
    bad = ' class="bad" aria-invalid="true"' if problem else ""
    parts = [f'<label for="f-{name}">{esc(ctx.t["police." + name])}</label>',
             f'<input id="f-{name}" name="{name}" value="{esc(text(form, name))}"{bad}'
             f'{" required" if required else ""} {extra}>']
    if hint:
        parts.append(f'<div class="hint">{esc(hint)}</div>')
    if problem:
        parts.append(f'<div class="field-error" data-field="{name}">{esc(problem)}</div>')
    return "".join(parts)


def _purpose_block(ctx: PageContext, form: dict[str, str], errors: dict[str, str]) -> str:
    badge = _field(ctx, "badge", form, errors, extra='autocomplete="off" inputmode="latin"')
    problem = errors.get("purpose")
    purpose_error = f'<div class="field-error" data-field="purpose">{esc(problem)}</div>' if problem else ""
    return (_select(ctx, text(form, "purpose")) + purpose_error
            + _field(ctx, "legal_basis", form, errors, hint=ctx.t["police.legal_basis.hint"])
            + _field(ctx, "case_ref", form, errors) + badge)


def _forms(ctx: PageContext, form: dict[str, str], errors: dict[str, str], which: str | None) -> str:
    t = ctx.t
    csrf = f'<input type="hidden" name="csrf" value="{esc(ctx.csrf or "")}">'
    person_errors = errors if which == "person" else {}
    address_errors = errors if which == "address" else {}
    general = errors.get("_")
    alert = f'<div class="errors" role="alert">{esc(general)}</div>' if general else ""
    return (f'{alert}<p class="meta">{esc(t["police.intro"])}</p>'
            f'<form class="card police-person" method="post" action="/police/person">{csrf}'
            f'<h3>{esc(t["police.person"])}</h3>{_purpose_block(ctx, form, person_errors)}'
            + _field(ctx, "id_number", {} if which != "person" else form, person_errors,
                     extra='autocomplete="off" inputmode="latin" maxlength="40"')
            + f'<p><button type="submit">{esc(t["police.check"])}</button></p></form>'
            f'<form class="card police-address" method="post" action="/police/address">{csrf}'
            f'<h3>{esc(t["police.address"])}</h3>{_purpose_block(ctx, form, address_errors)}'
            + _field(ctx, "building_code", form if which == "address" else {}, address_errors,
                     extra='autocomplete="off" maxlength="32"')
            + _field(ctx, "unit_number", form if which == "address" else {}, address_errors, required=False,
                     extra='autocomplete="off" maxlength="32"')
            + f'<p><button type="submit">{esc(t["police.check"])}</button></p></form>')


def _errors(ctx: PageContext, status: int, payload: dict[str, Any]) -> dict[str, str]:
    t = ctx.t
    if status == 403:
        return {"_": t["police.error.scope"]}
    if status == 429:
        return {"_": t["police.error.quota" if payload.get("error") == "quota_exceeded" else "police.error.rate"]}
    if status != 400:
        return {"_": t["police.error.other"]}
    field = FORM_FIELD.get(str(payload.get("field")), "_")
    detail = str(payload.get("detail", ""))
    if field == "purpose" and "does not permit" in detail:
        return {"purpose": t["police.error.purpose_not_permitted"]}
    if field == "id_number":
        translated = id_number_message(t, detail)
        return {"id_number": translated if translated != detail else t["police.error.id_number"]}
    if field == "_":
        return {"_": t["police.error.other"]}
    return {field: t["police.error." + field]}


def _place(ctx: PageContext, place: dict[str, Any] | None) -> str:
    if not place:
        return ""
    if not place.get("in_jurisdiction"):
        return esc(ctx.t["police.outside"])
    unit = f' {esc(place["unit"])}' if place.get("unit") else ""
    return f'{esc(place.get("address") or place.get("building_code") or "")}{unit}'


def _person_result(ctx: PageContext, answer: dict[str, Any], zone: Any) -> str:
    t = ctx.t
    now = datetime.now(UTC)
    rows = [f'<p><strong class="result" data-result="{esc(answer["result"])}">'
            f'{esc(t["police.result." + answer["result"]])}</strong></p>',
            f'<p class="meta">{esc(t["police.id_number"])}{"：" if ctx.lang == "zh" else ": "}'
            f'{esc(answer["id_number"])}</p>']
    reg = answer.get("registration")
    if reg:
        since = t["police.since"].format(when=when(t, reg["since"], zone, now))
        rows.append(f'<p>{esc(t["police.registered_at"])}: {_place(ctx, reg["place"])} · {esc(since)}</p>')
    if "last_seen" in answer:
        seen = answer["last_seen"]
        shown = esc(t["police.none"]) if not seen else _place(ctx, seen["place"]) + (
            f' · {esc(when(t, seen["at"], zone, now))}' if seen.get("at") else "")
        rows.append(f'<p>{esc(t["police.last_seen"])}: {shown}</p>')
    if "history" in answer:
        items = "".join(f'<li>{_place(ctx, h["place"])} · {esc(when(t, h["from"], zone, now))}'
                        f'{" – " + esc(when(t, h["until"], zone, now)) if h.get("until") else ""} · '
                        f'{esc(t["police.history." + h["status"]])}</li>' for h in answer["history"])
        rows.append(f'<h3>{esc(t["police.history"])}</h3><ul>{items or "<li>" + esc(t["police.none"]) + "</li>"}</ul>')
    if "open_cases" in answer:
        items = "".join(f'<li>{esc(t.get("case." + c["kind"], c["kind"]))} · '
                        f'{esc(when(t, c["opened_at"], zone, now))}</li>' for c in answer["open_cases"])
        rows.append(f'<h3>{esc(t["police.open_cases"])}</h3>'
                    f'<ul>{items or "<li>" + esc(t["police.none"]) + "</li>"}</ul>')
    if answer.get("withheld"):
        parts = ("、" if ctx.lang == "zh" else ", ").join(t["police.part." + p] for p in answer["withheld"])
        rows.append(f'<p class="meta">{esc(t["police.withheld"].format(parts=parts))}</p>')
    return f'<section class="card police-result"><h2>{esc(t["police.result"])}</h2>{"".join(rows)}</section>'


def _people(ctx: PageContext, title: str, people: list[dict[str, Any]]) -> str:
    items = "".join(f'<li>{esc(p.get("name") or "")} · {esc(p.get("id_number") or "")}</li>' for p in people)
    return f'<h4>{esc(ctx.t[title])}</h4><ul>{items or "<li>" + esc(ctx.t["police.none"]) + "</li>"}</ul>'


def _address_result(ctx: PageContext, answer: dict[str, Any]) -> str:
    t = ctx.t
    out = [f'<p><strong>{_place(ctx, answer["place"])}</strong></p>']
    if answer.get("full_identity_numbers"):
        out.append(f'<p class="meta">{esc(t["police.full_ids"])}</p>')
    if not answer["units"]:
        out.append(f'<p>{esc(t["police.no_units"])}</p>')
    for unit in answer["units"]:
        block = [f'<h3>{esc(t["police.unit"].format(unit=unit["unit"], capacity=unit["capacity"]))}</h3>',
                 _people(ctx, "police.registered", unit["registered"]),
                 _people(ctx, "police.evidenced", unit["evidenced"])]
        if unit["registered_not_evidenced"]:
            block.append(_people(ctx, "police.registered_not_evidenced", unit["registered_not_evidenced"]))
        if unit["evidenced_not_registered"]:
            block.append(_people(ctx, "police.evidenced_not_registered", unit["evidenced_not_registered"]))
        if unit["unknown_cards"]:
            block.append(f'<p class="meta">{esc(t["police.unknown_cards"].format(n=unit["unknown_cards"]))}</p>')
        out.append(f'<div class="unit">{"".join(block)}</div>')
    return f'<section class="card police-result"><h2>{esc(t["police.result"])}</h2>{"".join(out)}</section>'


async def console_page(request: web.Request) -> web.Response:
    ctx, _ = page_user(request, "police")
    return render_page(ctx, ctx.t["police.title"], _forms(ctx, {}, {}, None))


async def person_submit(request: web.Request) -> web.Response:
    ctx, _ = page_user(request, "police")
    form = await read_form(request)
    body = {"purpose": _purpose_of(form), "id_number": text(form, "id_number")}
    status, answer, _ = await run_call(request, "police.person_check", person_check, needs=MATCH, body=body)
    # The number is not put back into the form: the page shows it masked.
    kept = {k: v for k, v in form.items() if k in PURPOSE_FIELDS}
    if status != 200:
        if status == 400 and answer.get("field") == "id_number":
            kept["id_number"] = text(form, "id_number")
        return render_page(ctx, ctx.t["police.title"], _forms(ctx, kept, _errors(ctx, status, answer), "person"),
                           status=status)
    zone = request.app[RULES].zone
    return render_page(ctx, ctx.t["police.title"], _person_result(ctx, answer, zone) + _forms(ctx, kept, {}, None))


async def address_submit(request: web.Request) -> web.Response:
    ctx, _ = page_user(request, "police")
    form = await read_form(request)
    body: dict[str, Any] = {"purpose": _purpose_of(form), "building_code": text(form, "building_code")}
    if text(form, "unit_number"):
        body["unit_number"] = text(form, "unit_number")
    status, answer, _ = await run_call(request, "police.address_check", address_check, needs=OCCUPANTS, body=body)
    kept = {k: v for k, v in form.items() if k in (*PURPOSE_FIELDS, "building_code", "unit_number")}
    if status != 200:
        return render_page(ctx, ctx.t["police.title"], _forms(ctx, kept, _errors(ctx, status, answer), "address"),
                           status=status)
    return render_page(ctx, ctx.t["police.title"], _address_result(ctx, answer) + _forms(ctx, kept, {}, None))
