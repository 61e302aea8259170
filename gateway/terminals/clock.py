"""At which time a terminal's own event is reported.

A terminal stamps its events with its own clock, and that clock may be wrong:
unset after a power cut (the year 2000), drifted for months, set in the wrong
zone. The sync measures each terminal's clock against the gateway's at every
probe (``currentDeviceTime`` in System/status, gateway/terminals/sync.py); the
rule below then decides per event (docs/terminal-events.md, "Times"):

- a stamp without a zone cannot be placed: the arrival time;
- the clock is known to be off by more than the tolerance: the stamp
  corrected by the measured offset (for a live event that is about its
  arrival; for one re-posted or caught up after an outage it is the best
  estimate of when it happened), never later than its arrival;
- otherwise (the clock is right, or was never measured):
  - a stamp ahead of the arrival by more than the tolerance: the arrival time
    (a clock ahead);
  - a stamp older than the outbox keeps events: the arrival time (an unset
    clock);
  - else the stamp: a re-posted or caught-up event keeps when it happened.

A clock that is wrong but was never measured (a push listener without a
``[[terminals]]`` table for the box) passes as right when it is off by less
than the outbox's age bound: measure it by listing the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Source = Literal["terminal", "corrected", "arrival"]


@dataclass(frozen=True)
class Stamp:
    at: datetime
    source: Source  # "arrival": the terminal's time was not believed


def event_time(stamped: datetime | None, arrived: datetime, *, offset_s: float | None, tolerance_s: float,
               max_age_s: float) -> Stamp:
    """``offset_s``: the terminal's clock minus the gateway's, None when not
    measured. ``arrived`` must carry a zone."""
    if stamped is None or stamped.tzinfo is None:
        return Stamp(arrived, "arrival")
    oldest = arrived - timedelta(seconds=max_age_s)
    try:
        if offset_s is not None and abs(offset_s) > tolerance_s:
            corrected = stamped - timedelta(seconds=offset_s)
            if oldest <= corrected <= arrived + timedelta(seconds=tolerance_s):
                return Stamp(min(corrected, arrived), "corrected")
            return Stamp(arrived, "arrival")
        if stamped > arrived + timedelta(seconds=tolerance_s) or stamped < oldest:
            return Stamp(arrived, "arrival")
    except (OverflowError, ValueError):  # a stamp at the edge of the calendar: an unset clock
        return Stamp(arrived, "arrival")
    return Stamp(stamped, "terminal")


def offset_s(device_time: datetime, sent: datetime, answered: datetime) -> float:
    """The terminal's clock minus the gateway's, from a time it gave between
    ``sent`` and ``answered`` (the round trip's middle; the terminal's clock
    says whole seconds, so half a second either way is noise)."""
    middle = sent + (answered - sent) / 2
    return (device_time - middle).total_seconds()
