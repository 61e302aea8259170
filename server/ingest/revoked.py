"""The ids of revoked gateways, read in one query every few seconds so that
ingest refuses their messages without a query per message (parse.REVOKED_REASON).

Revocation also removes the gateway's broker login (server/fleet/revoke.py),
so its messages normally stop at the broker; this is the second line, for
what was in flight, a broker without per-gateway logins (the embedded demo
broker) or one provisioned by hand."""

from __future__ import annotations

import sqlalchemy as sa

from server.db.models import gateways

REFRESH_S = 3.0


def revoked_ids(engine: sa.Engine) -> frozenset[str]:
    with engine.connect() as conn:
        return frozenset(conn.execute(sa.select(gateways.c.id).where(gateways.c.revoked_at.is_not(None))).scalars())
