"""Fixtures of the end-to-end tests: a :class:`System` whose children die with the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import System, running_system


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    """Request it after ``mosquitto`` and ``postgres_url``: fixtures are torn down
    in reverse, so the processes die before their broker and database go."""
    with running_system(tmp_path) as sys_:
        yield sys_
