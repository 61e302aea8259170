"""The registry's trace: every change recorded with who, when and what, in
the transaction that makes it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from server.db.models import history


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def record(conn: sa.Connection, now: datetime, actor: str, entity: str, entity_id: int, action: str,
           changes: dict[str, Any] | None = None) -> None:
    """``changes`` maps a field to its new value, or to ``[old, new]`` for an
    update. Identity numbers must already be masked."""
    doc = {k: ([_plain(x) for x in v] if isinstance(v, tuple | list) else _plain(v))
           for k, v in (changes or {}).items()}
    conn.execute(sa.insert(history).values(at=now, actor=actor[:64], entity=entity, entity_id=entity_id,
                                           action=action, changes=doc))


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Fields whose value changed, as ``[old, new]``."""
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}
