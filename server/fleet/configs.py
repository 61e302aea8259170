"""A gateway's remote configuration as the server keeps it: numbered
versions, each validated exactly as the gateway will validate it
(gateway.config.remote_problems), signed with the allowlist key the gateway
already trusts, and stored with the signed message as published. Rows are
never deleted; only what became of a version (its outcome) is filled in
later (server/fleet/config_outcomes.py). docs/remote-config.md."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from gateway.config import remote_problems
from gateway.errors import ConfigProblem
from rentgate import signing, wire
from server.access.keys import SigningKey
from server.db.models import gateway_configs, gateways, users
from server.web.body import NUL_PROBLEM, nul_at
from server.web.errors import Conflict, InvalidInput, NotFound

JsonObj = dict[str, Any]
# The gate a version gets when nobody says: the gateway's own default
# (wire.RemoteConfig), the same as the server setting config_gate_s's.
DEFAULT_GATE_S = 30.0
MAX_COMMENT = 200
MAX_PROBLEMS_SHOWN = 20
CHUNK = 500


class ConfigProblems(InvalidInput):
    """Settings a gateway would refuse: ``problems`` name each key path."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = f"; and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__("settings", "; ".join(f"{p.path}: {p.message}" for p in shown) + more)
        self.problems = shown


# Keys only an administrator may change: where the gateway's broker is
# (a landlord pointing their gateway at a broker of their own would make its
# entries vanish from the server) and the outbox's bounds (a landlord
# shrinking them would make the gateway drop unsent entries).
ADMIN_ONLY_KEYS = ("broker_url", "outbox")
ADMIN_ONLY_MESSAGE = "only an administrator may change this"


def for_landlord(current: JsonObj, wanted: JsonObj) -> JsonObj:
    """The settings a landlord's new version gets: ``wanted`` with the
    administrator-only keys of ``current`` carried over unchanged. Raises
    ConfigProblems when ``wanted`` sets one of them to something else."""
    problems = [ConfigProblem(key, ADMIN_ONLY_MESSAGE) for key in ADMIN_ONLY_KEYS
                if key in wanted and wanted[key] != current.get(key)]
    if problems:
        raise ConfigProblems(problems)
    return {**wanted, **{key: current[key] for key in ADMIN_ONLY_KEYS if key in current}}


def initial_settings() -> JsonObj:
    """The settings of an enrolled gateway's first version: none, so that
    its local settings file (devices, cameras, access) applies unchanged
    until someone configures it from the server."""
    return {}


def check_settings(gateway_id: str, settings: JsonObj) -> None:
    """Raise ConfigProblems when a gateway would refuse ``settings``."""
    problems = remote_problems(gateway_id, settings)
    if problems:
        raise ConfigProblems(problems)


def _gateway(conn: sa.Connection, gateway_id: str) -> sa.Row[Any]:
    g = gateways.c
    row = conn.execute(sa.select(g.id, g.revoked_at, g.config_version, g.config_attempted, g.config_state,
                                 g.config_error).where(g.id == gateway_id)).first()
    if row is None:
        raise NotFound("gateway", gateway_id)
    return row


def newest_version(conn: sa.Connection, gateway_id: str) -> int:
    """0 when the gateway has no version yet."""
    c = gateway_configs.c
    found = conn.execute(sa.select(sa.func.max(c.version)).where(c.gateway_id == gateway_id)).scalar()
    return int(found or 0)


def create_version(conn: sa.Connection, now: datetime, *, gateway_id: str, settings: JsonObj,
                   gate_s: float | None = None, actor: int | None = None, comment: str | None = None,
                   rollout_id: int | None = None, key: SigningKey, by_landlord: bool = False) -> int:
    """Validate, sign and store the next version of ``gateway_id``'s
    configuration; its number. ``actor``: the user who made it (None: the
    system). ``gate_s`` None: the previous version's gate, else 30 s.
    ``by_landlord``: the administrator-only keys are kept as they are
    (``for_landlord``).
    Raises ConfigProblems (400), NotFound, Conflict for a revoked gateway,
    InvalidInput for a message larger than a gateway takes. Publishing is
    the caller's, after the commit (server/fleet/config_publisher.py)."""
    gw = _gateway(conn, gateway_id)
    if gw.revoked_at is not None:
        raise Conflict("the gateway was revoked: it no longer receives configurations")
    if by_landlord:
        settings = for_landlord(current_settings(conn, gateway_id), settings)
    try:
        json.dumps(settings, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidInput("settings", "holds values JSON cannot carry (dates, infinities); write them as text "
                                       "or numbers") from None
    where = nul_at(settings)
    if where is not None:  # PostgreSQL refuses U+0000 in text and JSON (e.g. "\u0000" in a page's TOML)
        raise InvalidInput(f"settings.{where}"[:100], NUL_PROBLEM)
    check_settings(gateway_id, settings)
    if comment is not None and len(comment) > MAX_COMMENT:
        raise InvalidInput("comment", f"longer than {MAX_COMMENT} characters")
    if comment is not None and any(unicodedata.category(ch).startswith("C") for ch in comment):
        raise InvalidInput("comment", "contains a control or invisible character")
    previous = newest_version(conn, gateway_id)
    if gate_s is None:
        c = gateway_configs.c
        last = conn.execute(sa.select(c.gate_s).where(c.gateway_id == gateway_id, c.version == previous)).scalar()
        gate_s = float(last) if last is not None else DEFAULT_GATE_S
    if not wire.GATE_S_MIN <= gate_s <= wire.GATE_S_MAX:
        raise InvalidInput("gate_s", f"must be between {wire.GATE_S_MIN:g} and {wire.GATE_S_MAX:g} seconds")
    version = previous + 1
    message, signature = _signed(now, gateway_id, version, settings, gate_s, key)
    conn.execute(sa.insert(gateway_configs).values(
        gateway_id=gateway_id, version=version, settings=settings, gate_s=gate_s, payload=message,
        key_id=key.key_id, signature=signature, created_at=now, created_by=actor, comment=comment,
        rollout_id=rollout_id))
    return version


def _signed(now: datetime, gateway_id: str, version: int, settings: JsonObj, gate_s: float,
            key: SigningKey) -> tuple[str, str]:
    """The signed message of a version and its signature."""
    try:
        config = wire.RemoteConfig(gw=gateway_id, version=version, issued_at=now, gate_s=gate_s,
                                   settings=settings)
    except ValueError as exc:  # pydantic's ValidationError: e.g. values that are not JSON
        raise InvalidInput("settings", f"cannot be sent to a gateway: {str(exc)[:200]}") from None
    payload = wire.config_payload(config)
    size = len(payload.encode())
    if size > wire.MAX_CONFIG_BYTES:
        raise InvalidInput("settings", f"the configuration is {size} bytes; a gateway takes at most "
                                       f"{wire.MAX_CONFIG_BYTES}")
    signature = signing.sign(payload.encode(), key.private_key)
    return wire.signed_config_json(payload, key.key_id, signature).decode(), signature


def create_versions(conn: sa.Connection, now: datetime, settings_by_gateway: Mapping[str, JsonObj], *,
                    gate_s: float, actor: int | None, comment: str | None, rollout_id: int | None,
                    key: SigningKey) -> dict[str, int]:
    """The next version of many gateways at once (a rollout's wave), in a
    few statements instead of several per gateway. The caller has checked
    that the gateways exist and are not revoked and validated each one's
    settings (server/fleet/rollouts.py). Each gateway's version number."""
    c = gateway_configs.c
    ids = list(settings_by_gateway)
    newest: dict[str, int] = {}
    for start in range(0, len(ids), CHUNK):
        rows = conn.execute(sa.select(c.gateway_id, sa.func.max(c.version))
                            .where(c.gateway_id.in_(ids[start:start + CHUNK])).group_by(c.gateway_id))
        newest.update({r[0]: int(r[1]) for r in rows})
    made: dict[str, int] = {}
    rows_out = []
    for gw, settings in settings_by_gateway.items():
        version = newest.get(gw, 0) + 1
        message, signature = _signed(now, gw, version, settings, gate_s, key)
        rows_out.append({"gateway_id": gw, "version": version, "settings": settings, "gate_s": gate_s,
                         "payload": message, "key_id": key.key_id, "signature": signature, "created_at": now,
                         "created_by": actor, "comment": comment, "rollout_id": rollout_id})
        made[gw] = version
    for start in range(0, len(rows_out), CHUNK):
        conn.execute(sa.insert(gateway_configs), rows_out[start:start + CHUNK])
    return made


def published_message(conn: sa.Connection, gateway_id: str) -> bytes | None:
    """The signed message of the gateway's newest version, as published."""
    c = gateway_configs.c
    found = conn.execute(sa.select(c.payload).where(c.gateway_id == gateway_id)
                         .order_by(c.version.desc()).limit(1)).scalar()
    return None if found is None else str(found).encode()


# --------------------------------------------------------------------------- reading


def _who(column: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
    return sa.select(users.c.display_name).where(users.c.id == column).scalar_subquery()


def current(conn: sa.Connection, gateway_id: str, default_gate_s: float) -> JsonObj:
    """The newest version (or the empty one a gateway starts with) and what
    the gateway runs."""
    gw = _gateway(conn, gateway_id)
    c = gateway_configs.c
    row = conn.execute(sa.select(c.version, c.settings, c.gate_s, c.created_at, _who(c.created_by).label("by"),
                                 c.comment, c.rollout_id, c.outcome, c.outcome_at, c.outcome_detail)
                       .where(c.gateway_id == gateway_id).order_by(c.version.desc()).limit(1)).mappings().first()
    running = {"version": gw.config_version, "attempted": gw.config_attempted, "state": gw.config_state,
               "error": gw.config_error}
    base: JsonObj = {"gateway": gateway_id, "revoked": gw.revoked_at is not None, "running": running}
    if row is None:
        return {**base, "version": None, "settings": initial_settings(), "gate_s": default_gate_s,
                "created_at": None, "created_by": None, "comment": None, "rollout_id": None, "outcome": None,
                "outcome_at": None, "outcome_detail": None}
    return {**base, "version": row["version"], "settings": row["settings"], "gate_s": row["gate_s"],
            "created_at": row["created_at"], "created_by": row["by"], "comment": row["comment"],
            "rollout_id": row["rollout_id"], "outcome": row["outcome"], "outcome_at": row["outcome_at"],
            "outcome_detail": row["outcome_detail"]}


def current_settings_of(conn: sa.Connection, gateway_ids: list[str]) -> dict[str, JsonObj]:
    """Each gateway's newest settings (the empty ones before any version)."""
    c = gateway_configs.c
    newer = gateway_configs.alias("newer")
    newest = sa.select(sa.func.max(newer.c.version)).where(newer.c.gateway_id == c.gateway_id).scalar_subquery()
    found: dict[str, JsonObj] = {}
    for start in range(0, len(gateway_ids), CHUNK):
        rows = conn.execute(sa.select(c.gateway_id, c.settings).where(
            c.gateway_id.in_(gateway_ids[start:start + CHUNK]), c.version == newest))
        found.update({r[0]: dict(r[1]) for r in rows if isinstance(r[1], dict)})
    return {gw: found.get(gw, initial_settings()) for gw in gateway_ids}


def current_settings(conn: sa.Connection, gateway_id: str) -> JsonObj:
    c = gateway_configs.c
    found = conn.execute(sa.select(c.settings).where(c.gateway_id == gateway_id)
                         .order_by(c.version.desc()).limit(1)).scalar()
    return dict(found) if isinstance(found, dict) else initial_settings()


def _changed_keys(before: JsonObj | None, after: JsonObj) -> list[str]:
    before = before or {}
    keys = set(before) | set(after)
    return sorted(k for k in keys if json.dumps(before.get(k), sort_keys=True) != json.dumps(after.get(k),
                                                                                               sort_keys=True))


def history(conn: sa.Connection, gateway_id: str, *, limit: int, before: int | None = None) -> JsonObj:
    """Versions newest first, ``limit`` at most, older than ``before``; each
    with who made it (display name), when, why, what became of it and which
    top-level keys it changed. ``next_before``: the page after this one."""
    _gateway(conn, gateway_id)
    c = gateway_configs.c
    query = (sa.select(c.version, c.settings, c.gate_s, c.created_at, _who(c.created_by).label("by"), c.comment,
                       c.rollout_id, c.outcome, c.outcome_at, c.outcome_detail)
             .where(c.gateway_id == gateway_id).order_by(c.version.desc()).limit(limit + 1))
    if before is not None:
        query = query.where(c.version < before)
    rows: list[Mapping[str, Any]] = [dict(r) for r in conn.execute(query).mappings()]
    more = len(rows) > limit
    page = rows[:limit]
    # The version before the page's last one, for what that one changed.
    if page and not more:
        oldest = page[-1]["version"]
        prior = conn.execute(sa.select(c.settings).where(c.gateway_id == gateway_id, c.version < oldest)
                             .order_by(c.version.desc()).limit(1)).scalar()
        rows.append({"settings": prior if isinstance(prior, dict) else {}})
    versions = []
    for i, row in enumerate(page):
        older = rows[i + 1]["settings"] if i + 1 < len(rows) else {}
        versions.append({"version": row["version"], "created_at": row["created_at"], "created_by": row["by"],
                         "comment": row["comment"], "gate_s": row["gate_s"], "rollout_id": row["rollout_id"],
                         "outcome": row["outcome"], "outcome_at": row["outcome_at"],
                         "outcome_detail": row["outcome_detail"],
                         "changed": _changed_keys(older, row["settings"] or {})})
    return {"gateway": gateway_id, "versions": versions, "next_before": page[-1]["version"] if more else None}
