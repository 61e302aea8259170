"""Reading submitted forms and turning every input problem, ours or the
registry's, into a message on the form field it concerns, in the page's
language. An identity number is never echoed back: after an error its box is
empty and only the reason is shown."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from aiohttp import web

from server.pages.layout import PageContext, esc
from server.registry.idnumber import InvalidIdNumber, parse_id_number
from server.web.errors import InvalidInput

_EM4100 = re.compile(r"[0-9A-F]{10}")
# The registry names fields as its API does; the forms name them shorter.
_FORM_FIELD = {"person.id_number": "id_number", "person.name": "name", "person.phone": "phone",
               "person.origin": "origin", "id_number": "id_number", "name": "name", "phone": "phone",
               "origin": "origin", "arrived_at": "arrived", "departed_at": "departed", "reason": "reason",
               "credential": "card", "credential.value": "card", "credential.format": "card"}
# English reasons of server.registry.idnumber, by their start, to text keys.
_ID_REASONS = (("must be 18 characters", "idn.length"), ("must be 17 digits", "idn.shape"),
               ("unknown province code", "idn.province"), ("birth date", "idn.birth"),
               ("sequence number 000", "idn.sequence"), ("wrong check character", "idn.check"))
_PROBLEMS = (("is required", "error.required"), ("is in the future", "error.future"))
# server/registry/freetext.hidden_character and the service's length check.
_HIDDEN = re.compile(r"contains (U\+[0-9A-F]{4,6}),")
_TOO_LONG = re.compile(r"longer than (\d+) characters")


@dataclass
class FormErrors(Exception):
    """Problems by form field; ``general`` for those that belong to no field."""

    fields: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)


def id_number_message(t: dict[str, str], reason: str) -> str:
    for start, key in _ID_REASONS:
        if reason.startswith(start):
            return t[key]
    return reason


def problem_message(t: dict[str, str], form_field: str, problem: str) -> str:
    if form_field == "id_number":
        translated = id_number_message(t, problem)
        if translated != problem:
            return translated
    label = t.get(form_field, form_field)
    if form_field == "card" and "hexadecimal" in problem:
        return f'{label}{_sep(t)}{t["error.card"]}'
    for start, key in _PROBLEMS:
        if problem.startswith(start):
            return f"{label}{_sep(t)}{t[key]}"
    if (hidden := _HIDDEN.match(problem)) is not None:
        return f"{label}{_sep(t)}{t['error.hidden'].format(code=hidden.group(1))}"
    if (too_long := _TOO_LONG.match(problem)) is not None:
        return f"{label}{_sep(t)}{t['error.too_long'].format(n=too_long.group(1))}"
    if problem.startswith("not a phone number"):
        return f"{label}{_sep(t)}{t['error.phone']}"
    return f"{label}{_sep(t)}{problem}"


def from_invalid_input(t: dict[str, str], exc: InvalidInput) -> FormErrors:
    form_field = _FORM_FIELD.get(exc.field, exc.field)
    return FormErrors(fields={form_field: problem_message(t, form_field, exc.problem)})


def text(form: dict[str, str], name: str) -> str:
    return form.get(name, "").strip()


async def read_form(request: web.Request) -> dict[str, str]:
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def check_id_number(t: dict[str, str], raw: str, today: date, errors: FormErrors) -> None:
    """Checked here as well as in the registry so the message is the precise
    Chinese one before anything is written."""
    if not raw:
        errors.fields["id_number"] = f'{t["id_number"]}{_sep(t)}{t["error.required"]}'
        return
    try:
        parse_id_number(raw, today=today)
    except InvalidIdNumber as exc:
        errors.fields["id_number"] = id_number_message(t, exc.reason)


def _sep(t: dict[str, str]) -> str:
    return t["sep"]


def required(t: dict[str, str], form: dict[str, str], name: str, errors: FormErrors) -> str:
    value = text(form, name)
    if not value:
        errors.fields[name] = f'{t[name]}{_sep(t)}{t["error.required"]}'
    return value


def parse_day(t: dict[str, str], form: dict[str, str], name: str, today: date, errors: FormErrors) -> date | None:
    raw = text(form, name)
    if not raw:
        errors.fields[name] = f'{t[name]}{_sep(t)}{t["error.required"]}'
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        errors.fields[name] = f'{t[name]}{_sep(t)}{t["error.date"]}'
        return None
    if day > today:
        errors.fields[name] = f'{t[name]}{_sep(t)}{t["error.future"]}'
        return None
    return day


def card_value(t: dict[str, str], form: dict[str, str], errors: FormErrors) -> str | None:
    raw = text(form, "card").replace(" ", "").upper()
    if not raw:
        return None
    if not _EM4100.fullmatch(raw):
        errors.fields["card"] = f'{t["card"]}{_sep(t)}{t["error.card"]}'
        return None
    return raw


def moment(day: date, zone: ZoneInfo, now: datetime) -> datetime:
    """A day picked on a form as a moment: the start of that local day, or
    now when it is today (a departure today is not at midnight)."""
    if day == now.astimezone(zone).date():
        return now
    return datetime.combine(day, time(0), tzinfo=zone)


def today_in(zone: ZoneInfo, now: datetime) -> date:
    return now.astimezone(zone).date()


# --------------------------------------------------------------------------- rendering


def errors_box(ctx: PageContext, errors: FormErrors | None) -> str:
    if errors is None or (not errors.fields and not errors.general):
        return ""
    items = "".join(f"<li>{esc(m)}</li>" for m in [*errors.fields.values(), *errors.general])
    return f'<div class="errors" role="alert"><strong>{esc(ctx.t["error.title"])}</strong><ul>{items}</ul></div>'


def input_field(ctx: PageContext, name: str, *, value: str = "", kind: str = "text", errors: FormErrors | None = None,
                hint: str | None = None, extra: str = "", label: str | None = None) -> str:
    problem = errors.fields.get(name) if errors is not None else None
    bad = ' class="bad" aria-invalid="true"' if problem else ""
    parts = [f'<label for="f-{name}">{esc(label or ctx.t[name])}</label>',
             f'<input id="f-{name}" name="{name}" type="{kind}" value="{esc(value)}"{bad} {extra}>']
    if hint:
        parts.append(f'<div class="hint">{esc(hint)}</div>')
    if problem:
        parts.append(f'<div class="field-error" data-field="{name}">{esc(problem)}</div>')
    return "".join(parts)
