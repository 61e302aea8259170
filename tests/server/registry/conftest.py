"""Every test here starts in the default language (Chinese), whatever the
environment says or an earlier ``main(["--lang", "en", ...])`` chose:
set_cli_lang keeps its choice for the process."""

from __future__ import annotations

import pytest

from rentgate import lang


@pytest.fixture(autouse=True)
def default_language(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lang, "_chosen", None)
    monkeypatch.delenv(lang.LANG_ENV, raising=False)
