"""The gateway tests' fake server on the test's Mosquitto, acknowledging
every batch it receives (test_app.py defines its own, which does not)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.fake_server import FakeServer
from tests.gateway.helpers import GW
from tests.services import Mosquitto


@pytest.fixture
def server(mosquitto: Mosquitto) -> Iterator[FakeServer]:
    fake = FakeServer(mosquitto.url, GW, acking=True)
    yield fake
    fake.close()
