"""Time zone names in settings (the server's rules, a terminal's clock zone):
one check, so that both refuse the same names with the same words."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def check_zone(value: str) -> str:
    """``value`` if it names an IANA time zone; ValueError saying so if not."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value
