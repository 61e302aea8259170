"""The case lifecycle: open -> acknowledged -> resolved | auto_closed.

Every function runs in the caller's transaction and records what it did in
history (entity "case"). The database keeps one open (or acknowledged) case
per (kind, subject) through the partial unique index uq_cases_open_kind_subject.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.access.registry import Outcome
from server.db.models import CASE_KINDS, CASE_STATES, OPEN_CASE_STATES, cases, history
from server.registry import history as trail
from server.web.errors import Conflict, InvalidInput, NotFound

JsonObj = dict[str, Any]

# Resolutions a person may choose; the engine's own ones (registered,
# seen_again, condition_cleared, registration_ended, ...) come from the rules.
MANUAL_RESOLUTIONS = ("fixed", "false_alarm", "registered", "departed", "still_resident", "other")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def case_dict(row: sa.RowMapping) -> JsonObj:
    doc = dict(row)
    for key, value in doc.items():
        if isinstance(value, datetime):
            doc[key] = value.isoformat()
    return doc


def _case_history(conn: sa.Connection, now: datetime, actor: str, action: str, ids: Sequence[int],
                  changes: Sequence[JsonObj]) -> None:
    """One history row per case of ``ids`` with its ``changes``. A sweep
    records a hundred thousand at once: on PostgreSQL they go in as two
    array parameters (0.1 s) rather than as many rows of parameters (1.8 s)."""
    if not ids:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(
            "INSERT INTO history (at, actor, entity, entity_id, action, changes) "
            "SELECT :at, :actor, 'case', k.id, :action, CAST(k.changes AS jsonb) "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:changes AS text[])) AS k(id, changes)"
        ).bindparams(sa.bindparam("at", type_=history.c.at.type)),
            {"at": now, "actor": actor, "action": action, "ids": list(ids),
             "changes": [json.dumps(c, ensure_ascii=False) for c in changes]})
        return
    conn.execute(sa.insert(history), [
        {"at": now, "actor": actor, "entity": "case", "entity_id": i, "action": action, "changes": c}
        for i, c in zip(ids, changes, strict=True)])


def record_opened(conn: sa.Connection, now: datetime, actor: str, rows: Sequence[Sequence[Any]]) -> None:
    """History for cases just inserted: rows of (id, kind, subject)."""
    _case_history(conn, now, actor, "opened", [r[0] for r in rows],
                  [{"kind": r[1], "subject": r[2]} for r in rows])


def close_cases(conn: sa.Connection, now: datetime, actor: str, ids: Iterable[int], *, resolution: str,
                state: str = "auto_closed") -> list[int]:
    """Close those of ``ids`` that are still open; returns the ones closed.
    The state test in the UPDATE makes a concurrent close (a landlord's answer
    against the sweep) lose cleanly instead of closing twice."""
    wanted = list(ids)
    closed: list[int] = []
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start:start + 5000]
        closed += conn.execute(
            sa.update(cases).where(cases.c.id.in_(chunk), cases.c.state.in_(OPEN_CASE_STATES))
            .values(state=state, closed_at=now, resolution=resolution, updated_at=now)
            .returning(cases.c.id)).scalars().all()
    _case_history(conn, now, actor, state, closed, [{"resolution": resolution}] * len(closed))
    return closed


def _load(conn: sa.Connection, case_id: int, *, lock: bool = False) -> sa.RowMapping:
    query = sa.select(cases).where(cases.c.id == case_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound("case", case_id)
    return row


def _require_open(row: sa.RowMapping) -> None:
    if row["state"] not in OPEN_CASE_STATES:
        raise Conflict(f"case {row['id']} is already {row['state']}")


def get_case(conn: sa.Connection, case_id: int) -> JsonObj:
    """The case with its history, oldest first."""
    doc = case_dict(_load(conn, case_id))
    rows = conn.execute(sa.select(history.c.at, history.c.actor, history.c.action, history.c.changes)
                        .where(history.c.entity == "case", history.c.entity_id == case_id)
                        .order_by(history.c.id)).mappings().all()
    doc["history"] = [case_dict(r) for r in rows]
    return doc


def acknowledge_case(conn: sa.Connection, now: datetime, actor: str, case_id: int) -> JsonObj:
    row = _load(conn, case_id, lock=True)
    if row["state"] != "open":
        raise Conflict(f"case {case_id} is {row['state']}, only an open case can be acknowledged")
    conn.execute(sa.update(cases).where(cases.c.id == case_id)
                 .values(state="acknowledged", acknowledged_at=now, updated_at=now))
    trail.record(conn, now, actor, "case", case_id, "acknowledged", {"state": ["open", "acknowledged"]})
    return case_dict(_load(conn, case_id))


def resolve_case(conn: sa.Connection, now: datetime, actor: str, case_id: int, *, resolution: str,
                 note: str | None = None) -> JsonObj:
    """A person closes the case. A presumed departure is closed by its
    answer instead, which also acts on the registration."""
    if resolution not in MANUAL_RESOLUTIONS:
        raise InvalidInput("resolution", f"must be one of {', '.join(MANUAL_RESOLUTIONS)}")
    if note is not None and len(note) > 2000:
        raise InvalidInput("note", "at most 2000 characters")
    row = _load(conn, case_id, lock=True)
    _require_open(row)
    if row["kind"] == "presumed_departure":
        raise Conflict("a presumed departure is closed by answering it (POST .../answer)")
    conn.execute(sa.update(cases).where(cases.c.id == case_id)
                 .values(state="resolved", closed_at=now, resolution=resolution, updated_at=now))
    trail.record(conn, now, actor, "case", case_id, "resolved", {"resolution": resolution, "note": note})
    return case_dict(_load(conn, case_id))


def answer_departure(conn: sa.Connection, now: datetime, actor: str, case_id: int, *, still_living: bool,
                     departed_at: datetime | None = None) -> Outcome:
    """The landlord's answer to "has this tenant left?". Still living: the
    case is resolved and the silence period restarts from now (the sweep
    reads this answer's closed_at). Departed: the registration ends at
    ``departed_at`` (default: the last evidence) and its credentials go."""
    row = _load(conn, case_id, lock=True)
    if row["kind"] != "presumed_departure":
        raise Conflict(f"case {case_id} is a {row['kind']} case, not a presumed departure")
    _require_open(row)
    changes = []
    if still_living:
        if departed_at is not None:
            raise InvalidInput("departed_at", "only with still_living false")
        resolution = "still_resident"
    else:
        departed = departed_at or row["evidence_at"] or now
        if departed > now:
            raise InvalidInput("departed_at", "must not be in the future")
        from server.registry import service as registry  # the registry imports nothing of ours

        ended = registry.deregister(conn, now, actor, row["registration_id"], departed_at=departed,
                                    reason="departure_confirmed")
        changes = list(ended.changes)
        resolution = "departure_confirmed"
    conn.execute(sa.update(cases).where(cases.c.id == case_id)
                 .values(state="resolved", closed_at=now, resolution=resolution, updated_at=now))
    trail.record(conn, now, actor, "case", case_id, "answered",
                 {"still_living": still_living, "departed_at": _iso(departed_at), "resolution": resolution})
    return Outcome(case_dict(_load(conn, case_id)), changes)


def list_cases(conn: sa.Connection, *, state: str | None = None, kind: str | None = None,
               building_id: int | None = None, unit_id: int | None = None, limit: int = 100,
               before_id: int | None = None, building_ids: Sequence[int] | None = None) -> list[JsonObj]:
    """Newest first; page with ``before_id`` = the last id of the previous
    page. ``building_ids`` restricts to those buildings (a landlord's)."""
    if state is not None and state not in (*CASE_STATES, "active"):
        raise InvalidInput("state", f"must be one of {', '.join(CASE_STATES)} or active")
    if kind is not None and kind not in CASE_KINDS:
        raise InvalidInput("kind", f"must be one of {', '.join(CASE_KINDS)}")
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be 1..1000")
    query = sa.select(cases).order_by(cases.c.id.desc()).limit(limit)
    if state == "active":
        query = query.where(cases.c.state.in_(OPEN_CASE_STATES))
    elif state is not None:
        query = query.where(cases.c.state == state)
    if kind is not None:
        query = query.where(cases.c.kind == kind)
    if building_id is not None:
        query = query.where(cases.c.building_id == building_id)
    if unit_id is not None:
        query = query.where(cases.c.unit_id == unit_id)
    if before_id is not None:
        query = query.where(cases.c.id < before_id)
    if building_ids is not None:
        query = query.where(cases.c.building_id.in_(list(building_ids)))
    return [case_dict(r) for r in conn.execute(query).mappings()]
