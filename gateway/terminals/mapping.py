"""From the gateway's allowlist to the users and cards one terminal holds.

* An entry goes to a terminal when it names no door (every door of the
  gateway) or names one of the terminal's doors.
* The user's ``employeeNo`` is the entry's opaque ``person`` reference, which
  the server never makes from an identity number. A reference the terminal
  cannot take (over 32 characters, or other than letters and digits, such as
  the server's ``p-123``) becomes a stable digest of it instead; the digest
  starts with ``h`` and no plain reference can look like it.
* Cards: a ``raw`` credential is the hex of the card number and Hikvision's
  ``cardNo`` is its decimal (the reverse of devices.hikvision.card_credential);
  an ``em4100`` one is the 40-bit number of its 10 hex digits, in decimal.
  Wiegand and OSDP credentials are not cards a terminal's own reader reads
  the same way: they are skipped and counted.
* ``terminal_person``: a face (or fingerprint) enrolled at the terminal under
  that employeeNo; the user record must exist and be enabled. The face itself
  is the terminal's business.
* Validity: a person's entries' earliest ``valid_from`` and latest
  ``valid_until`` (unbounded if any entry is), in the terminal's local time;
  ``valid_until`` is exclusive and ISAPI's endTime inclusive, hence a second less.
  Unbounded is the window 2000-01-01 to 2037-12-31, always enabled.
* The name is the configured label: nothing about the person.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from devices.hikvision_isapi import CARD_NO_MAX, CardRecord, UserRecord, is_employee_no, local_time
from rentgate.wire import AllowlistEntry, Credential

_CARD_FORMATS = ("raw", "em4100")


@dataclass
class Desired:
    """What one terminal should hold, keyed as the terminal keys them."""

    users: dict[str, UserRecord] = field(default_factory=dict)
    cards: dict[str, CardRecord] = field(default_factory=dict)
    skipped: int = 0  # credentials a terminal cannot hold (Wiegand, OSDP, oversize)


def employee_no(person: str) -> str:
    if is_employee_no(person) and not (person.startswith("h") and len(person) == 32):
        return person
    return "h" + hashlib.blake2b(person.encode(), digest_size=16).hexdigest()[:31]


def card_no(credential: Credential) -> str | None:
    """The terminal's cardNo for a credential, or None when it has none."""
    if credential.format not in _CARD_FORMATS:
        return None
    try:
        number = int(credential.value, 16)
    except ValueError:
        return None
    text = str(number)
    return text if 0 < number and len(text) <= CARD_NO_MAX else None


def for_terminal(entries: Iterable[AllowlistEntry], doors: Iterable[str], zone: ZoneInfo, label: str) -> Desired:
    wanted = set(doors)
    desired = Desired()
    windows: dict[str, tuple[datetime | None, datetime | None]] = {}
    for entry in entries:
        if entry.doors and wanted.isdisjoint(entry.doors):
            continue
        if entry.credential.format == "terminal_person":
            if not is_employee_no(entry.credential.value):
                desired.skipped += 1
                continue
            user = entry.credential.value
        else:
            number = card_no(entry.credential)
            if number is None:
                desired.skipped += 1
                continue
            user = employee_no(entry.person)
            desired.cards[number] = CardRecord(card_no=number, employee_no=user)
        windows[user] = _widen(windows.get(user), entry.valid_from, entry.valid_until, user in windows)
    for user, (begin, end) in windows.items():
        desired.users[user] = _user(user, begin, end, zone, label)
    return desired


def _widen(have: tuple[datetime | None, datetime | None] | None, begin: datetime | None, end: datetime | None,
           seen: bool) -> tuple[datetime | None, datetime | None]:
    if not seen or have is None:
        return begin, end
    old_begin, old_end = have
    new_begin = None if old_begin is None or begin is None else min(old_begin, begin)
    new_end = None if old_end is None or end is None else max(old_end, end)
    return new_begin, new_end


def _user(employee: str, begin: datetime | None, end: datetime | None, zone: ZoneInfo, label: str) -> UserRecord:
    # Always an enabled window, wide when unbounded: ISAPI says enable=false
    # means "permanent", but firmware (and the project's simulator) that read
    # it as "disabled" exist; an explicit 2000-2037 window means the same on both.
    user = UserRecord(employee_no=employee, name=label, valid=True)
    start = local_time(begin.astimezone(zone)) if begin is not None else user.begin
    # valid_until is exclusive; the terminal's endTime is the last second allowed.
    stop = local_time((end - timedelta(seconds=1)).astimezone(zone)) if end is not None else user.end
    return UserRecord(employee_no=employee, name=label, valid=True, begin=start, end=stop)
