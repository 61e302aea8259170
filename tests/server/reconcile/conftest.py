"""A fresh World (a small district with its reconciler) per test, on both databases."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.server.reconcile.world import World


@pytest.fixture
def world(engine: sa.Engine) -> World:
    w = World(engine)
    w.areas()
    return w
