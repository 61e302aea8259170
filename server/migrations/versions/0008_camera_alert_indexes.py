"""indexes for a building's camera alerts: gateways by building, and the
camera alert events by gateway and time (partial)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ALERTS = sa.text("kind IN ('tailgating', 'unidentified_entry')")


def upgrade() -> None:
    # The coordinator's unit page read every gateway and every event of the
    # building's gateways to find its last ten alerts (bench/patrol.py: 25 %
    # fewer pages a second).
    op.create_index("ix_gateways_building_id", "gateways", ["building_id"])
    op.create_index("ix_events_camera_alerts", "events", ["gateway_id", "occurred_at"],
                    sqlite_where=_ALERTS, postgresql_where=_ALERTS)


def downgrade() -> None:
    op.drop_index("ix_events_camera_alerts", table_name="events")
    op.drop_index("ix_gateways_building_id", table_name="gateways")
