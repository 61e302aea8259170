"""A terminal's configuration page, ``/landlord/gateways/{gw}/config``, for
the landlord of the terminal's building and administrators (the route
policy checks the gateway's building; another landlord's terminal is a
404 like a missing one): what the terminal runs now, what became of the
newest version and why, a form to change the settings as TOML text (the
way the terminal's own settings file reads), and the history of changes
with who made them. Saving makes a new signed version and sends it at once
(server/fleet/configs.py); the terminal tries it behind its health gate
and goes back by itself if it fails (docs/remote-config.md)."""

from __future__ import annotations

import asyncio
import re
import tomllib
import unicodedata
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from aiohttp import web

from gateway.errors import ConfigProblem
from rentgate import wire
from server.auth.policy import allow
from server.db.models import gateways
from server.fleet import configs
from server.fleet.config_service import CONFIGS, NoSigningKey
from server.pages import toml_text
from server.pages.forms import read_form, text
from server.pages.guard import page_not_found, page_user
from server.pages.layout import PageContext, esc, page, when
from server.pages.state import PAGES
from server.pages.texts_gateway_config import TEXTS
from server.web.errors import Conflict, InvalidInput, NotFound

ROLES = ("admin", "landlord")
HISTORY_SHOWN = 20
CSS = """<style>
textarea.toml{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:14px;min-height:16em;white-space:pre;
overflow-x:auto}
ul.history{list-style:none;padding:0;margin:0} ul.history li{padding:8px 0;border-bottom:1px solid #e3e5e8}
.outcome{font-weight:600} .outcome.bad{color:#d93025} .outcome.good{color:#1e8e3e}
</style>"""
_TOML_LINE = re.compile(r"line (\d+)")
Row = dict[str, Any]


def texts(ctx: PageContext) -> dict[str, str]:
    return TEXTS[ctx.lang]


def config_url(gateway_id: str) -> str:
    """The page's address, for links from the terminals page."""
    return f"/landlord/gateways/{gateway_id}/config"


# --------------------------------------------------------------------------- words


def where_in_words(ctx: PageContext, path: str) -> str:
    """``devices.0.type`` as ``devices → 第1项 → type``: list positions
    counted from one, as people count."""
    parts = []
    for part in path.split("."):
        if part.isdigit():
            parts.append(f"第{int(part) + 1}项" if ctx.lang == "zh" else f"item {int(part) + 1}")
        else:
            parts.append(part)
    return " → ".join(parts)


def problem_words(ctx: PageContext, problem: ConfigProblem) -> str:
    tt = texts(ctx)
    message = problem.message
    if message.startswith("may not be set by a remote configuration"):
        message = tt["error.not_remote"]
    elif message.startswith("the trusted keys may not be set"):
        message = tt["error.public_keys"]
    elif message == configs.ADMIN_ONLY_MESSAGE:
        message = tt["error.admin_only"]
    return f"{where_in_words(ctx, problem.path)}{ctx.t['sep']}{message}"


def outcome_words(ctx: PageContext, outcome: str | None, detail: str | None) -> tuple[str, str]:
    """The words for what became of a version, and a class for its colour."""
    tt = texts(ctx)
    words = tt[f"outcome.{outcome or 'pending'}"]
    if detail and outcome in ("rolled_back", "refused"):
        words += tt["why"].format(reason=detail)
    css = "bad" if outcome in ("rolled_back", "refused") else "good" if outcome == "applied" else ""
    return words, css


def running_words(ctx: PageContext, running: Row) -> str:
    tt = texts(ctx)
    if running["state"] == "applying" and running["attempted"] is not None:
        lines = [tt["trying"].format(n=running["attempted"])]
        if running["version"] is not None:
            lines.insert(0, tt["running"].format(n=running["version"]))
        return "；".join(lines) if ctx.lang == "zh" else "; ".join(lines)
    if running["version"] is not None:
        return tt["running"].format(n=running["version"])
    if running["state"] is not None:
        return tt["running_local"]
    return tt["not_heard"]


# --------------------------------------------------------------------------- rendering


def _history(ctx: PageContext, versions: list[Row], zone: ZoneInfo, now: datetime) -> str:
    tt = texts(ctx)
    if not versions:
        return f'<p class="meta">{esc(tt["no_history"])}</p>'
    items = []
    for v in versions:
        words, css = outcome_words(ctx, v["outcome"], v["outcome_detail"])
        who = tt["by"].format(name=v["created_by"] or tt["by_system"])
        gate = tt["gate_used"].format(n=format(v["gate_s"], "g"))
        parts = [f'<b>{esc(tt["newest_v"].format(n=v["version"]))}</b> · '
                 f'{esc(when(ctx.t, v["created_at"], zone, now))}',
                 f'<div class="meta">{esc(who)} · {esc(gate)}</div>']
        if v["changed"]:
            parts.append(f'<div class="meta">{esc(tt["changed"].format(keys=", ".join(v["changed"])))}</div>')
        if v["comment"]:
            parts.append(f'<div>{esc(v["comment"])}</div>')
        parts.append(f'<div class="outcome {css}">{esc(words)}</div>')
        items.append(f'<li class="version" data-outcome="{esc(v["outcome"] or "pending")}">{"".join(parts)}</li>')
    return f'<ul class="history">{"".join(items)}</ul>'


def _form(ctx: PageContext, gw: str, settings_text: str, gate: str, comment: str) -> str:
    tt = texts(ctx)
    lo, hi = f"{wire.GATE_S_MIN:g}", f"{wire.GATE_S_MAX:g}"
    return (f'<form class="card config-form" method="post" action="{esc(config_url(gw))}">{ctx.csrf_field()}'
            f'<label for="f-settings">{esc(tt["settings"])}</label>'
            f'<textarea id="f-settings" class="toml" name="settings" rows="16" spellcheck="false" '
            f'autocapitalize="off">{esc(settings_text)}</textarea>'
            f'<div class="hint">{esc(tt["settings_hint"])}</div>'
            f'<label for="f-gate">{esc(tt["gate_s"])}</label>'
            f'<input id="f-gate" name="gate_s" type="number" inputmode="decimal" min="{lo}" max="{hi}" step="any" '
            f'value="{esc(gate)}"><div class="hint">{esc(tt["gate_hint"])}</div>'
            f'<label for="f-comment">{esc(tt["comment"])}</label>'
            f'<input id="f-comment" name="comment" maxlength="{configs.MAX_COMMENT}" value="{esc(comment)}">'
            f'<p><button type="submit">{esc(tt["save"])}</button></p></form>')


def _load(request: web.Request, gw: str) -> tuple[Row, Row, int | None] | None:
    service = request.app[CONFIGS]
    with service.engine.connect() as conn:
        try:
            current = configs.current(conn, gw, service.default_gate_s)
        except NotFound:
            return None
        versions = configs.history(conn, gw, limit=HISTORY_SHOWN)
        building = conn.execute(sa.select(gateways.c.building_id).where(gateways.c.id == gw)).scalar()
    return current, versions, building


async def _render(request: web.Request, ctx: PageContext, gw: str, *, settings_text: str | None = None,
                  gate: str | None = None, comment: str = "", errors: list[str] | None = None,
                  status: int = 200) -> web.Response:
    loaded = await asyncio.to_thread(_load, request, gw)
    if loaded is None:
        raise page_not_found(ctx)
    current, history, building = loaded
    tt = texts(ctx)
    zone, now = request.app[PAGES].rules.zone, datetime.now(UTC)
    parts = []
    ok = request.query.get("ok", "")
    if ok in ("saved_ok", "saved_later") and current["version"] is not None and not errors:
        parts.append(f'<div class="flash" role="status">{esc(tt[ok].format(n=current["version"]))}</div>')
    if errors:
        items = "".join(f"<li>{esc(e)}</li>" for e in errors)
        parts.append(f'<div class="errors" role="alert"><strong>{esc(tt["error.title"])}</strong>'
                     f'<ul>{items}</ul></div>')
    parts.append(f'<div class="card now"><h3>{esc(tt["now"])}</h3><p>{esc(running_words(ctx, current["running"]))}</p>')
    if current["version"] is None:
        parts.append(f'<p class="meta">{esc(tt["no_version"])}</p></div>')
    else:
        words, css = outcome_words(ctx, current["outcome"], current["outcome_detail"])
        parts.append(f'<p>{esc(tt["newest"])}{esc(ctx.t["sep"])}{esc(tt["newest_v"].format(n=current["version"]))}'
                     f' · <span class="outcome {css}" data-outcome="{esc(current["outcome"] or "pending")}">'
                     f'{esc(words)}</span></p></div>')
    if current["revoked"]:
        parts.append(f'<div class="card meta revoked">{esc(tt["revoked"])}</div>')
    else:
        parts.append(f'<h2>{esc(tt["edit"])}</h2>')
        parts.append(_form(ctx, gw, toml_text.dumps(current["settings"]) if settings_text is None else settings_text,
                           f'{current["gate_s"]:g}' if gate is None else gate, comment))
    parts.append(f'<h2>{esc(tt["history"])}</h2><div class="card">{_history(ctx, history["versions"], zone, now)}</div>')
    if building is not None:
        parts.append(f'<p><a href="/landlord/buildings/{int(building)}/terminals">{esc(tt["back"])}</a></p>')
    title = f'{tt["title"]}{ctx.t["sep"]}{tt["named"].format(id=gw)}'
    return page(ctx, title, "".join(parts), status=status, head=CSS)


async def config_page(request: web.Request) -> web.Response:
    ctx, _ = page_user(request, *ROLES)
    return await _render(request, ctx, request.match_info["gw"])


# --------------------------------------------------------------------------- saving


def _parse(ctx: PageContext, form: dict[str, str]) -> tuple[dict[str, Any] | None, float | None, str | None,
                                                            list[str]]:
    tt = texts(ctx)
    errors: list[str] = []
    raw = form.get("settings", "")
    settings: dict[str, Any] | None = None
    if len(raw.encode()) > wire.MAX_CONFIG_BYTES:
        errors.append(tt["error.too_big"].format(n=wire.MAX_CONFIG_BYTES))
    else:
        try:
            settings = tomllib.loads(raw)
        except tomllib.TOMLDecodeError as exc:
            line = _TOML_LINE.search(str(exc))
            errors.append(tt["error.toml"].format(line=line.group(1), detail=str(exc)) if line
                          else tt["error.toml_plain"].format(detail=str(exc)))
    gate_text = text(form, "gate_s")
    gate: float | None = None
    if gate_text:
        try:
            gate = float(gate_text)
        except ValueError:
            gate = -1.0
        if not wire.GATE_S_MIN <= gate <= wire.GATE_S_MAX:
            errors.append(tt["error.gate"].format(lo=f"{wire.GATE_S_MIN:g}", hi=f"{wire.GATE_S_MAX:g}"))
    comment = text(form, "comment")
    if len(comment) > configs.MAX_COMMENT:
        errors.append(tt["error.comment"].format(n=configs.MAX_COMMENT))
    elif any(unicodedata.category(ch).startswith("C") for ch in comment):
        errors.append(tt["error.comment_chars"])
    return settings, gate, comment or None, errors


async def config_submit(request: web.Request) -> web.Response:
    ctx, user = page_user(request, *ROLES)
    gw = request.match_info["gw"]
    tt = texts(ctx)
    form = await read_form(request)
    settings, gate, comment, errors = _parse(ctx, form)
    again = {"settings_text": form.get("settings", "")[:wire.MAX_CONFIG_BYTES], "gate": text(form, "gate_s"),
             "comment": text(form, "comment")[:configs.MAX_COMMENT]}
    if errors or settings is None:
        return await _render(request, ctx, gw, errors=errors, status=400, **again)
    service = request.app[CONFIGS]
    settings_doc = settings

    def operation(conn: sa.Connection, now: datetime) -> tuple[int, list[str]]:
        version = configs.create_version(conn, now, gateway_id=gw, settings=settings_doc, gate_s=gate,
                                         by_landlord=user.role != "admin",
                                         actor=user.id, comment=comment, key=service.key)
        return version, [gw]

    try:
        _, published = await service.write(operation)
    except configs.ConfigProblems as exc:
        return await _render(request, ctx, gw, errors=[problem_words(ctx, p) for p in exc.problems], status=400,
                             **again)
    except NotFound:
        raise page_not_found(ctx) from None
    except Conflict:
        return await _render(request, ctx, gw, errors=[tt["error.revoked"]], status=409, **again)
    except sa.exc.IntegrityError:  # another version saved at the same moment
        return await _render(request, ctx, gw, errors=[tt["error.other"].format(detail="try again")], status=409,
                             **again)
    except NoSigningKey:
        return await _render(request, ctx, gw, errors=[tt["error.key"]], status=503, **again)
    except InvalidInput as exc:
        return await _render(request, ctx, gw, errors=[tt["error.other"].format(detail=exc.problem)], status=400,
                             **again)
    raise web.HTTPSeeOther(f"{config_url(gw)}?ok={'saved_ok' if published else 'saved_later'}")


def add_routes(r: web.UrlDispatcher) -> None:
    mine = allow(*ROLES, page=True, path={"gw": "gateway"}, rule="the landlord of the gateway's building")
    r.add_get("/landlord/gateways/{gw}/config", mine(config_page))
    r.add_post("/landlord/gateways/{gw}/config", mine(config_submit))
