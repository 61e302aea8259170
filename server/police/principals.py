"""Who is asking, as the police API sees it: a client (an integrating
system, OAuth2 client credentials) or an officer (a person with a login of
role ``police``), with the scopes, rate, daily quota and jurisdiction an
administrator gave it. An officer without a row here gets the defaults
below: single match-style look-ups, a few a minute."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from server.db.models import POLICE_SCOPES, police_principals, users

OFFICER_DEFAULT_SCOPES = ("lookup",)
OFFICER_DEFAULT_RATE_PER_MIN = 20
OFFICER_DEFAULT_DAILY_QUOTA = 300


@dataclass(frozen=True)
class PoliceCaller:
    user_id: int
    username: str
    kind: str  # "client" | "officer"
    client_id: str | None
    scopes: frozenset[str]
    rate_per_min: int
    daily_quota: int
    jurisdiction: str | None

    @property
    def actor(self) -> str:
        """How the audit log names the caller."""
        return f"client:{self.client_id}" if self.kind == "client" else f"officer:{self.username}"

    @property
    def is_officer(self) -> bool:
        return self.kind == "officer"


_CALLER = (
    sa.select(users.c.id, users.c.username, users.c.role, users.c.disabled_at, police_principals.c.kind,
              police_principals.c.client_id, police_principals.c.scopes, police_principals.c.rate_per_min,
              police_principals.c.daily_quota, police_principals.c.jurisdiction, police_principals.c.revoked_at)
    .select_from(users.outerjoin(police_principals, police_principals.c.user_id == users.c.id))
    .where(users.c.id == sa.bindparam("user_id"))
)


def load_caller(conn: sa.Connection, user_id: int) -> PoliceCaller | None:
    """The police caller behind a user, or None (not police, disabled, revoked)."""
    row = conn.execute(_CALLER, {"user_id": user_id}).first()
    if row is None or row.role != "police" or row.disabled_at is not None or row.revoked_at is not None:
        return None
    if row.kind is None:
        return PoliceCaller(int(row.id), row.username, "officer", None, frozenset(OFFICER_DEFAULT_SCOPES),
                            OFFICER_DEFAULT_RATE_PER_MIN, OFFICER_DEFAULT_DAILY_QUOTA, None)
    scopes = frozenset(s for s in (row.scopes or []) if s in POLICE_SCOPES)
    return PoliceCaller(int(row.id), row.username, row.kind, row.client_id, scopes, int(row.rate_per_min),
                        int(row.daily_quota), row.jurisdiction)
