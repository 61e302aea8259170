"""The plate font for the rendering tests: the system's CJK font (Debian:
fonts-noto-cjk), else the one shipped with rentgate. Missing both (a
package installed without its data), the tests skip, or fail where CI
requires every service (RENTGATE_REQUIRE_SERVICES=1). Every test starts in
the default language (Chinese: tests/conftest.py)."""

from __future__ import annotations

import os

import pytest

from rentgate import lang
from server.plates.fonts import FontUnavailable, PlateFont, find_font
from tests.services import REQUIRE_ENV


def english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lang, "_chosen", None)
    monkeypatch.setenv(lang.LANG_ENV, "en")


@pytest.fixture(scope="session")
def plate_font() -> PlateFont:
    try:
        return find_font(environ={})
    except FontUnavailable as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{exc} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(str(exc))
