"""Staged rollout of a configuration change to many gateways: a first wave
(a share of them, chosen by a hash of the rollout's id and each gateway's,
so the choice is stable and spread over buildings), then, once every
gateway of that wave has applied its version, the rest. A rollback or a
refusal anywhere halts the rollout (server/fleet/config_outcomes.py); an
administrator may halt it too. Halting stops the next wave; versions
already made stay (a new configuration undoes them). docs/remote-config.md."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from gateway.config import REMOTE_KEYS
from server.access.keys import SigningKey
from server.db.models import buildings, config_rollouts, gateway_configs, gateways, users
from server.fleet import configs
from server.web.errors import Conflict, InvalidInput, NotFound

JsonObj = dict[str, Any]
MAX_GATEWAYS = 10_000
MAX_FAILED_SHOWN = 100
MAX_PROBLEMS_SHOWN = 10
OK_OUTCOMES = ("applied", "superseded")
STATES = ("applied", "pending", "rolled_back", "refused", "superseded", "waiting")


def wave_order(rollout_id: int, gateway_ids: Sequence[str]) -> list[str]:
    """The gateways in the order waves take them: by a hash of the rollout
    and the gateway, so a rerun picks the same ones and another rollout others."""
    return sorted(gateway_ids, key=lambda gw: hashlib.sha256(f"{rollout_id}:{gw}".encode()).hexdigest())


def first_wave_size(share: float, n: int) -> int:
    return min(n, max(1, math.ceil(share * n - 1e-9)))


def _check_changes(changes: JsonObj) -> None:
    if not changes:
        raise InvalidInput("changes", "name at least one setting to change")
    wrong = sorted(k for k in changes if k not in REMOTE_KEYS)
    if wrong:
        raise InvalidInput("changes", f"{', '.join(w[:40] for w in wrong[:5])}: may not be set by a remote "
                                      f"configuration (only {', '.join(sorted(REMOTE_KEYS))})")


def _resolve(conn: sa.Connection, gateway_ids: list[str] | None, building_ids: list[int] | None) -> list[str]:
    g = gateways.c
    if (gateway_ids is None) == (building_ids is None):
        raise InvalidInput("gateways", "give either gateways or building_ids")
    if gateway_ids is not None:
        wanted = list(dict.fromkeys(gateway_ids))
        found = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            found |= set(conn.execute(sa.select(g.id).where(g.id.in_(chunk), g.revoked_at.is_(None))).scalars())
        missing = [gw for gw in wanted if gw not in found]
        if missing:
            raise InvalidInput("gateways", f"{len(missing)} unknown or revoked: {', '.join(missing[:5])}")
        return wanted
    assert building_ids is not None
    known = set(conn.execute(sa.select(buildings.c.id).where(buildings.c.id.in_(building_ids))).scalars())
    if len(known) != len(set(building_ids)):
        raise InvalidInput("building_ids", "no such building")
    found_ids = list(conn.execute(sa.select(g.id).where(g.building_id.in_(building_ids), g.revoked_at.is_(None))
                                  .order_by(g.id).limit(MAX_GATEWAYS + 1)).scalars())
    if len(found_ids) > MAX_GATEWAYS:
        raise InvalidInput("building_ids", f"more than {MAX_GATEWAYS} gateways: split the rollout")
    if not found_ids:
        raise InvalidInput("building_ids", "these buildings have no gateways")
    return found_ids


def _merged(conn: sa.Connection, gateway_ids: Sequence[str], changes: JsonObj) -> dict[str, JsonObj]:
    """Each gateway's settings with ``changes`` over them; ConfigProblems
    naming the gateways a change would break."""
    merged: dict[str, JsonObj] = {}
    problems: list[str] = []
    checked: dict[str, list[str]] = {}
    for gw, current in configs.current_settings_of(conn, list(gateway_ids)).items():
        settings = {**current, **changes}
        merged[gw] = settings
        # Gateways with the same settings are checked once (the gateway id
        # itself is not part of what the check reads).
        text = json.dumps(settings, sort_keys=True)
        if text not in checked:
            try:
                configs.check_settings(gw, settings)
                checked[text] = []
            except configs.ConfigProblems as exc:
                checked[text] = [f"{p.path}: {p.message}" for p in exc.problems]
        problems += [f"{gw}: {p}" for p in checked[text]]
    if problems:
        more = f"; and {len(problems) - MAX_PROBLEMS_SHOWN} more" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        raise InvalidInput("changes", "; ".join(problems[:MAX_PROBLEMS_SHOWN]) + more)
    return merged


def create_rollout(conn: sa.Connection, now: datetime, *, changes: JsonObj, gateway_ids: list[str] | None,
                   building_ids: list[int] | None, share: float, gate_s: float, comment: str | None,
                   actor: int | None, key: SigningKey) -> tuple[JsonObj, list[str]]:
    """Store the rollout and the first wave's versions; the rollout and the
    gateways whose versions to publish."""
    _check_changes(changes)
    if not 0.01 <= share <= 1.0:
        raise InvalidInput("share", "must be between 0.01 and 1")
    targets = _resolve(conn, gateway_ids, building_ids)
    merged = _merged(conn, targets, changes)
    rollout_id = int(conn.execute(sa.insert(config_rollouts).values(
        created_at=now, created_by=actor, changes=changes, share=share, gateways=targets, state="staged",
        comment=comment, updated_at=now).returning(config_rollouts.c.id)).scalar_one())
    wave = wave_order(rollout_id, targets)[:first_wave_size(share, len(targets))]
    configs.create_versions(conn, now, {gw: merged[gw] for gw in wave}, gate_s=gate_s, actor=actor,
                            comment=comment, rollout_id=rollout_id, key=key)
    if len(wave) == len(targets):
        conn.execute(sa.update(config_rollouts).where(config_rollouts.c.id == rollout_id)
                     .values(state="completed", updated_at=now))
    return progress(conn, rollout_id), wave


def _rollout(conn: sa.Connection, rollout_id: int) -> sa.RowMapping:
    r = config_rollouts.c
    row = conn.execute(sa.select(config_rollouts, sa.select(users.c.display_name)
                                 .where(users.c.id == r.created_by).scalar_subquery().label("by"))
                       .where(r.id == rollout_id)).mappings().first()
    if row is None:
        raise NotFound("rollout", rollout_id)
    return row


def _versions(conn: sa.Connection, rollout_id: int) -> list[sa.RowMapping]:
    c = gateway_configs.c
    return list(conn.execute(sa.select(c.gateway_id, c.version, c.gate_s, c.outcome, c.outcome_detail)
                             .where(c.rollout_id == rollout_id).order_by(c.gateway_id)).mappings())


def progress(conn: sa.Connection, rollout_id: int) -> JsonObj:
    """The rollout and where each of its gateways stands: counts per state
    (``waiting``: not in a wave yet; ``pending``: sent, not heard of) and
    the gateways that failed, with the reason each gave."""
    row = _rollout(conn, rollout_id)
    versions = _versions(conn, rollout_id)
    targets: list[str] = list(row["gateways"] or [])
    counts = Counter({state: 0 for state in STATES})
    for v in versions:
        counts[v["outcome"] or "pending"] += 1
    counts["waiting"] = max(0, len(targets) - len(versions))
    failed = [{"gateway": v["gateway_id"], "version": v["version"], "outcome": v["outcome"],
               "reason": v["outcome_detail"]} for v in versions if v["outcome"] in ("rolled_back", "refused")]
    return {"id": row["id"], "state": row["state"], "changes": row["changes"], "share": row["share"],
            "comment": row["comment"], "created_at": row["created_at"], "created_by": row["by"],
            "updated_at": row["updated_at"], "gateways": len(targets), "sent": len(versions),
            "counts": dict(counts), "failed": failed[:MAX_FAILED_SHOWN], "failed_total": len(failed)}


def _revoked(conn: sa.Connection, gateway_ids: list[str]) -> set[str]:
    g = gateways.c
    found: set[str] = set()
    for start in range(0, len(gateway_ids), 500):
        found |= set(conn.execute(sa.select(g.id).where(g.id.in_(gateway_ids[start:start + 500]),
                                                        g.revoked_at.is_not(None))).scalars())
    return found


def continue_rollout(conn: sa.Connection, now: datetime, rollout_id: int, *, actor: int | None,
                     key: SigningKey) -> tuple[JsonObj, list[str]]:
    """Versions for every gateway not yet in a wave, once the first wave has
    applied; the rollout and the gateways to publish."""
    row = _rollout(conn, rollout_id)
    if row["state"] != "staged":
        raise Conflict(f"the rollout is {row['state']}: nothing to continue")
    versions = _versions(conn, rollout_id)
    # A gateway revoked since its version was sent will never answer.
    gone = _revoked(conn, [v["gateway_id"] for v in versions if v["outcome"] is None])
    pending = sum(1 for v in versions if v["outcome"] is None and v["gateway_id"] not in gone)
    failed = sum(1 for v in versions if v["outcome"] in ("rolled_back", "refused"))
    if pending or failed:
        raise Conflict(f"the first wave has not applied yet: {pending} of {len(versions)} gateways pending, "
                       f"{failed} failed")
    done = {v["gateway_id"] for v in versions}
    rest = [gw for gw in row["gateways"] if gw not in done]
    revoked = _revoked(conn, rest)
    rest = [gw for gw in rest if gw not in revoked]  # revoked since: nothing to send them
    try:
        merged = _merged(conn, rest, dict(row["changes"]))
    except InvalidInput as exc:
        raise Conflict(f"the change no longer fits every gateway (its settings changed since): {exc.problem}") from None
    gate_s = float(versions[0]["gate_s"]) if versions else configs.DEFAULT_GATE_S
    configs.create_versions(conn, now, {gw: merged[gw] for gw in rest}, gate_s=gate_s, actor=actor,
                            comment=row["comment"], rollout_id=rollout_id, key=key)
    conn.execute(sa.update(config_rollouts).where(config_rollouts.c.id == rollout_id)
                 .values(state="completed", updated_at=now))
    return progress(conn, rollout_id), rest


def halt_rollout(conn: sa.Connection, now: datetime, rollout_id: int) -> JsonObj:
    row = _rollout(conn, rollout_id)
    if row["state"] == "completed":
        raise Conflict("the rollout is completed: every version was sent; configure the gateways anew to undo it")
    if row["state"] == "staged":
        conn.execute(sa.update(config_rollouts).where(config_rollouts.c.id == rollout_id)
                     .values(state="halted", updated_at=now))
    return progress(conn, rollout_id)


def list_rollouts(conn: sa.Connection, limit: int) -> list[JsonObj]:
    r = config_rollouts.c
    ids = conn.execute(sa.select(r.id).order_by(r.id.desc()).limit(limit)).scalars().all()
    return [progress(conn, int(i)) for i in ids]
