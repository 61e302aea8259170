"""The patrol tests work in the scan tests' world (tests/server/scan/world.py)
with the same fixtures."""

from __future__ import annotations

from tests.server.scan.conftest import client, world  # noqa: F401 - fixtures, found by name
