"""The one way each kind of personal number is shown on a page or in an
answer that masks it. Every page takes its masks from here, so a card or a
phone looks the same on the status page, the landlord's pages, the
coordinator's pages and the public plate page.

- Card numbers: a fixed ``****`` and then the last four characters (fewer
  for short values: never more than half of the number). Enough to tell two
  cards of one unit apart at the door; the run of stars is always four, so
  the mask says nothing about the number's length and never enough to
  clone the card.
- Phone numbers: the first three and the last four digits (``138****1234``),
  as Chinese services print them; short numbers keep their last two digits.
- Identity numbers: server.registry.idnumber.mask_id_number, stored once as
  ``persons.id_masked`` (``4401**********123X``); pages show only that column.
"""

from __future__ import annotations

from server.registry.idnumber import mask_id_number

__all__ = ["CARD_STARS", "mask_card", "mask_id_number", "mask_phone"]

CARD_STARS = "****"
CARD_SHOWN = 4


def mask_card(value: str | None) -> str:
    """``0A1B2C3D4E`` → ``****3D4E``; ``90:324`` → ``****324``; empty → ``""``."""
    value = (value or "").strip()
    if not value:
        return ""
    # Half at most: a short Wiegand number must not be shown almost whole.
    shown = min(CARD_SHOWN, len(value) // 2)
    return CARD_STARS + (value[-shown:] if shown else "")


def mask_phone(phone: str | None) -> str:
    """``13812341234`` → ``138****1234``; ``020-8765 4321`` → ``020****4321``."""
    digits = "".join(ch for ch in (phone or "") if ch.isdigit())
    if len(digits) >= 8:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) > 2:
        return "*" * (len(digits) - 2) + digits[-2:]
    return "*" * len(digits)
