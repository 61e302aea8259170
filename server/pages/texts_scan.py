"""Page texts of the scan pages, merged into server/pages/i18n.TEXTS. Every
key needs both languages (tests/server/test_pages.py checks)."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "zh": {},
    "en": {},
}
