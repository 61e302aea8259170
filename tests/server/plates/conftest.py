"""The plate font for the rendering tests: the system's CJK font (Debian:
fonts-noto-cjk). Missing, the tests skip, or fail where CI requires every
service (RENTGATE_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os

import pytest

from server.plates.fonts import FontUnavailable, PlateFont, find_font
from tests.services import REQUIRE_ENV


@pytest.fixture(scope="session")
def plate_font() -> PlateFont:
    try:
        return find_font(environ={})
    except FontUnavailable as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{exc} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(str(exc))
