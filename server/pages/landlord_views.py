"""HTML of the landlord pages: the building list, a building, a unit. Pure
functions of the rows server/pages/queries_landlord.py reads."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from server.db.models import GRADES
from server.pages.forms import FormErrors, errors_box, input_field
from server.pages.layout import GRADE_COLOURS, PageContext, esc, grade_chip
from server.pages.masks import mask_card, mask_phone

Row = dict[str, Any]
DEREGISTER_REASONS = ("moved", "deregistered", "other")
# Evidence keys shown to the landlord, in this order; anything else in a
# case's evidence is internal and stays off the page.
EVIDENCE_KEYS = ("card", "days_seen", "events", "occupants", "capacity", "first_seen_at", "last_seen_at",
                 "registered_unit", "seen_unit")


def day(value: datetime | date | str | None, zone: ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        return value.astimezone(zone).strftime("%Y-%m-%d")
    return value.isoformat()


def _grade_summary(ctx: PageContext, grades: dict[str | None, int]) -> str:
    chips = []
    for grade in (*GRADES, None):
        count = grades.get(grade)
        if count:
            chips.append(f'{grade_chip(ctx.t, grade)}<span class="stat">×{count}</span>')
    return "".join(chips)


def worst_grade(grades: dict[str | None, int]) -> str | None:
    """The building's colour is its worst unit's: a red unit makes it red."""
    for grade in reversed(GRADES):
        if grades.get(grade):
            return grade
    return None


def buildings_list(ctx: PageContext, rows: list[Row]) -> str:
    t = ctx.t
    if not rows:
        return f'<div class="card">{esc(t["no_buildings"])}</div>'
    cards = []
    for row in rows:
        worst = worst_grade(row["grades"])
        edge = f' style="border-left:6px solid {GRADE_COLOURS[worst]}"' if worst else ""
        cards.append(
            f'<div class="card building" data-building="{row["id"]}"{edge}>'
            f'<h3><a href="/landlord/buildings/{row["id"]}">{esc(row["name"])}</a></h3>'
            f'<div class="meta">{esc(row["address"] or "")}</div>'
            f'<div class="row"><span class="stat">{esc(t["units"])} <b>{row["units"]}</b></span>'
            f'<span class="stat">{esc(t["occupants"])} <b class="occupants">{row["occupants"]}</b></span>'
            f'<span class="stat">{esc(t["open_cases"])} <b class="open-cases">{row["open_cases"]}</b></span>'
            f'<span class="stat">{esc(t["pending"])} <b class="pending">{row["pending"]}</b></span></div>'
            f'<div class="row">{_grade_summary(ctx, row["grades"])}</div></div>')
    return "".join(cards)


def _units_table(ctx: PageContext, rows: list[Row]) -> str:
    t = ctx.t
    body = "".join(
        f'<tr data-unit="{u["id"]}"><td><a href="/landlord/units/{u["id"]}">{esc(u["number"])}</a></td>'
        f'<td>{u["area_m2"]:g}</td><td>{u["capacity"]}</td><td class="occupants">{u["occupants"]}</td>'
        f'<td>{grade_chip(t, u["grade"])}</td></tr>'
        for u in rows)
    return (f'<div style="overflow-x:auto"><table class="units"><tr><th>{esc(t["unit"])}</th><th>{esc(t["area_m2"])}'
            f'</th><th>{esc(t["capacity"])}</th><th>{esc(t["occupants"])}</th><th>{esc(t["grades"])}</th></tr>'
            f'{body}</table></div>')


def _person_lines(ctx: PageContext, row: Row, zone: ZoneInfo) -> str:
    t = ctx.t
    parts = [f'<h3 class="name">{esc(row["name"])}</h3>',
             f'<div class="meta">{esc(t["id_number"])}{esc(t["sep"])}<span class="id-masked">'
             f'{esc(row["id_masked"] or "")}</span></div>']
    if row.get("phone"):
        parts.append(f'<div class="meta">{esc(t["phone"])}{esc(t["sep"])}{esc(mask_phone(row["phone"]))}</div>')
    if row.get("origin"):
        parts.append(f'<div class="meta">{esc(t["origin"])}{esc(t["sep"])}{esc(row["origin"])}</div>')
    parts.append(f'<div class="meta">{esc(t["unit"])}{esc(t["sep"])}{esc(row.get("unit") or "")} · '
                 f'{esc(t["arrived"])}{esc(t["sep"])}{day(row["valid_from"], zone)} · '
                 f'{esc(t["source"])}{esc(t["sep"])}{esc(t.get("source." + row["source"], row["source"]))}</div>')
    return "".join(parts)


def _confirm_part(ctx: PageContext, row: Row) -> str:
    """The confirm button, or, where only the grid coordinator may confirm
    (a move from another building), a notice saying so and nothing more."""
    t, reg = ctx.t, row["id"]
    if row.get("awaits_coordinator"):
        return (f'<p class="awaiting-verification"><span class="badge warn">{esc(t["move.awaiting"])}</span> '
                f'<span class="meta">{esc(t["move.awaiting_hint"])}</span></p>')
    note = f'<p class="meta move-note">{esc(t["move.verify_note"])}</p>' if row.get("move") else ""
    return (f'{note}<form method="post" action="/landlord/registrations/{reg}/confirm">{ctx.csrf_field()}'
            f'<button type="submit" class="confirm">{esc(t["confirm"])}</button></form>')


def declarations(ctx: PageContext, rows: list[Row], zone: ZoneInfo) -> str:
    t = ctx.t
    if not rows:
        return f'<div class="card meta">{esc(t["no_declarations"])}</div>'
    out = []
    for row in rows:
        reg = row["id"]
        out.append(
            f'<div class="card declaration" data-registration="{reg}">{_person_lines(ctx, row, zone)}'
            f'{_confirm_part(ctx, row)}'
            f'<details><summary>{esc(t["reject"])}</summary>'
            f'<form method="post" action="/landlord/registrations/{reg}/reject">{ctx.csrf_field()}'
            f'{input_field(ctx, "reason", label=t["reject_reason"], extra="required maxlength=32")}'
            f'<p><button type="submit" class="danger reject">{esc(t["reject"])}</button></p></form>'
            f'</details></div>')
    return "".join(out)


def departure_prompts(ctx: PageContext, rows: list[Row], zone: ZoneInfo, today: date) -> str:
    t = ctx.t
    if not rows:
        return f'<div class="card meta">{esc(t["no_departure_prompts"])}</div>'
    out = []
    for row in rows:
        question = t["departure_question"].format(name=row["name"] or "", unit=row["unit"] or "",
                                                  since=day(row["evidence_at"], zone), due=day(row["due_at"], zone))
        out.append(
            f'<div class="card departure" data-case="{row["id"]}"><p>{esc(question)}</p>'
            f'<form method="post" action="/landlord/cases/{row["id"]}/departure">{ctx.csrf_field()}'
            f'<p><button type="submit" name="answer" value="living" class="living">{esc(t["still_living"])}'
            f'</button></p>'
            f'{input_field(ctx, "left_on", value=today.isoformat(), kind="date", extra=f"max={today.isoformat()}")}'
            f'<p><button type="submit" name="answer" value="left" class="secondary left">{esc(t["has_left"])}'
            f'</button></p></form></div>')
    return "".join(out)


def _evidence_words(ctx: PageContext, evidence: dict[str, Any] | None, zone: ZoneInfo) -> str:
    t = ctx.t
    items = []
    for key in EVIDENCE_KEYS:
        value = (evidence or {}).get(key)
        if value is None or isinstance(value, dict | list):
            continue
        if key == "card":
            value = mask_card(str(value))
        elif key.endswith("_at"):
            value = day(str(value), zone)
        items.append(f"<li>{esc(t['ev.' + key])}{esc(t['sep'])}{esc(value)}</li>")
    return f'<ul class="evidence">{"".join(items)}</ul>' if items else ""


def other_cases(ctx: PageContext, rows: list[Row], zone: ZoneInfo) -> str:
    t = ctx.t
    if not rows:
        return f'<div class="card meta">{esc(t["no_cases"])}</div>'
    out = []
    for row in rows:
        since = t["case.since"].format(at=day(row["evidence_at"], zone)) if row["evidence_at"] else ""
        # Only what the case has: a case without a person or a start date
        # must not leave an empty "· ·" behind.
        facts = (row["unit"], row["name"], since, t["case.opened"].format(at=day(row["opened_at"], zone)),
                 t.get("case.state." + row["state"], t["case.state.open"]))
        out.append(
            f'<div class="card case" data-case="{row["id"]}"><h3>{esc(t.get("case." + row["kind"], row["kind"]))}'
            f'</h3><div class="meta">{" · ".join(esc(x) for x in facts if x)}</div>'
            f'{_evidence_words(ctx, row["evidence"], zone)}</div>')
    return "".join(out)


def moved_out(ctx: PageContext, rows: list[Row], zone: ZoneInfo) -> str:
    """The tenants who moved out lately: the old landlord learns that the
    registration ended and the cards stopped working, never where to."""
    if not rows:
        return ""
    t = ctx.t
    items = "".join(
        f'<li class="moved-out" data-registration="{row["id"]}">'
        + esc(t["moved_out.elsewhere"].format(name=row["name"] or "", unit=row["unit"] or "",
                                              day=day(row["ended_at"], zone)))
        + '</li>' for row in rows)
    return f'<h2>{esc(t["moved_out"])}</h2><div class="card notice"><ul class="plain moved-out">{items}</ul></div>'


def building_page(ctx: PageContext, building: Row, units: list[Row], pending: list[Row], cases: list[Row],
                  zone: ZoneInfo, today: date, errors: FormErrors | None = None, flash: str = "", *,
                  moved: list[Row] | None = None) -> str:
    t = ctx.t
    prompts = [c for c in cases if c["kind"] == "presumed_departure"]
    others = [c for c in cases if c["kind"] != "presumed_departure"]
    return (f'{flash}{errors_box(ctx, errors)}<div class="meta">{esc(building["address"] or "")}</div>'
            f'{moved_out(ctx, moved or [], zone)}'
            f'<h2>{esc(t["units"])}</h2>{_units_table(ctx, units)}'
            f'<h2>{esc(t["declarations"])}</h2>{declarations(ctx, pending, zone)}'
            f'<h2>{esc(t["departure_prompts"])}</h2>{departure_prompts(ctx, prompts, zone, today)}'
            f'<h2>{esc(t["other_cases"])}</h2>{other_cases(ctx, others, zone)}'
            f'<p><a href="/landlord">{esc(t["back"])}</a></p>')


def _deregister_form(ctx: PageContext, reg_id: int, today: date, errors: FormErrors | None) -> str:
    t = ctx.t
    options = "".join(f'<option value="{r}">{esc(t["reason." + r])}</option>' for r in DEREGISTER_REASONS)
    opened = " open" if errors is not None else ""
    departed = input_field(ctx, "departed", value=today.isoformat(), kind="date", errors=errors,
                           extra=f"required max={today.isoformat()}")
    return (f'<details{opened}><summary>{esc(t["deregister"])}</summary>'
            f'<form method="post" action="/landlord/registrations/{reg_id}/deregister">{ctx.csrf_field()}'
            f'{errors_box(ctx, errors)}'
            f'{departed}'
            f'<label for="f-reason-{reg_id}">{esc(t["reason"])}</label>'
            f'<select id="f-reason-{reg_id}" name="reason">{options}</select>'
            f'<p><button type="submit" class="danger deregister">{esc(t["deregister"])}</button></p></form></details>')


def occupants_list(ctx: PageContext, rows: list[Row], zone: ZoneInfo, today: date,
                   dereg_errors: tuple[int, FormErrors] | None) -> str:
    t = ctx.t
    if not rows:
        return f'<div class="card meta">{esc(t["no_occupants"])}</div>'
    out = []
    for row in rows:
        cards = ", ".join(mask_card(c) for c in row.get("cards", []))
        card_line = f'<div class="meta">{esc(t["card"])}{esc(t["sep"])}{esc(cards)}</div>' if cards else ""
        errors = dereg_errors[1] if dereg_errors is not None and dereg_errors[0] == row["id"] else None
        out.append(f'<div class="card occupant" data-registration="{row["id"]}">{_person_lines(ctx, row, zone)}'
                   f'{card_line}{_deregister_form(ctx, row["id"], today, errors)}</div>')
    return "".join(out)


def register_form(ctx: PageContext, unit_id: int, today: date, values: dict[str, str] | None,
                  errors: FormErrors | None) -> str:
    t = ctx.t
    v = values or {}
    arrived = input_field(ctx, "arrived", value=v.get("arrived", today.isoformat()), kind="date", errors=errors,
                          extra=f"required max={today.isoformat()}")
    card = input_field(ctx, "card", value=v.get("card", ""), errors=errors, hint=t["card_hint"],
                       extra="maxlength=10 autocomplete=off")
    moved = ' checked' if v.get("moved") else ""
    # The identity number is never put back into the form, even after an error.
    return (f'<form class="card register" method="post" action="/landlord/units/{unit_id}/register" novalidate>'
            f'{ctx.csrf_field()}{errors_box(ctx, errors)}'
            f'{input_field(ctx, "id_number", errors=errors, extra="autocomplete=off maxlength=18 required")}'
            f'{input_field(ctx, "name", value=v.get("name", ""), errors=errors, extra="required maxlength=100")}'
            f'{input_field(ctx, "phone", value=v.get("phone", ""), kind="tel", errors=errors)}'
            f'{input_field(ctx, "origin", value=v.get("origin", ""), errors=errors, extra="maxlength=100")}'
            f'{arrived}{card}'
            f'<label class="check"><input type="checkbox" name="moved" value="1"{moved} style="width:auto"> '
            f'{esc(t["moved_here_own"])}</label>'
            f'<p><button type="submit" class="register">{esc(t["register"])}</button></p></form>')


def unit_page(ctx: PageContext, unit: Row, occupants: list[Row], pending: list[Row], zone: ZoneInfo, today: date, *,
              values: dict[str, str] | None = None, errors: FormErrors | None = None,
              dereg_errors: tuple[int, FormErrors] | None = None, flash: str = "",
              moved: list[Row] | None = None) -> str:
    t = ctx.t
    return (f'{flash}<div class="meta">{esc(unit["building_name"])} · {esc(t["area_m2"])} {unit["area_m2"]:g} · '
            f'{esc(t["capacity"])} {unit["capacity"]} · {grade_chip(t, unit["grade"])}</div>'
            f'{moved_out(ctx, moved or [], zone)}'
            f'<h2>{esc(t["registered_occupants"])}</h2>{occupants_list(ctx, occupants, zone, today, dereg_errors)}'
            f'<h2>{esc(t["declarations"])}</h2>{declarations(ctx, pending, zone)}'
            f'<h2>{esc(t["register_tenant"])}</h2>{register_form(ctx, unit["id"], today, values, errors)}'
            f'<p><a href="/landlord/buildings/{unit["building_id"]}">{esc(t["back"])}</a></p>')
