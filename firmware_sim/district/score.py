"""The engine's cases against the ground truth: precision, recall and delay
per case kind, and the four rates true versus computed.

A case is right (counts for precision) when it points at an incident of a
kind it may rightly report (see truth.py). An incident counts for recall
when it was due: its start plus the rule's period plus one day lies before
the end of the run, and nobody put the record right before the rule could
have fired. Delay is the first matching case's opening minus the incident's
start, in days.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from firmware_sim.district.truth import Incident, TrueRatio
from server.rules import CityRules

# The kinds with targets (issue 4): precision and recall >= 0.98, median
# delay <= the rule's period + 1 day.
TARGET_KINDS = ("unregistered_occupant", "presumed_departure")
TARGET_RATIO = 0.98
KINDS = ("unregistered_occupant", "presumed_departure", "address_mismatch", "overcrowding", "unknown_credential",
         "credential_unused")
RATES = ("registration", "rental", "consistency", "pledge")


@dataclass(frozen=True)
class SeenCase:
    """A case the engine opened, in the simulation's own terms."""

    id: int
    kind: str
    opened_at: datetime
    closed_at: datetime | None
    unit: str | None
    building: int | None
    person: int | None  # the sim's person index (directly, or the holder of the case's card)
    registration_id: int | None
    card: str | None


def period_days(kind: str, rules: CityRules) -> float:
    return {
        "presumed_departure": rules.silence_days,
        "credential_unused": rules.credential_unused_days,
        "unknown_credential": 1.0,
    }.get(kind, rules.registration_deadline_days)


def matches(case: SeenCase, incident: Incident, unit_buildings: dict[str, int]) -> bool:
    if case.kind not in incident.kinds or case.opened_at < incident.start:
        return False
    if incident.kind == "presumed_departure":
        if case.kind == "presumed_departure":
            return case.registration_id is not None and case.registration_id == incident.registration_id
        return case.person == incident.person and case.registration_id == incident.registration_id
    if incident.kind in ("unregistered_occupant", "address_mismatch"):
        if case.person is None and case.kind == "unregistered_occupant" and case.card is None:
            # A unit door camera's case names the unit, not the person.
            return case.unit == incident.unit and incident.kind == "unregistered_occupant"
        return case.unit == incident.unit and case.person is not None and case.person == incident.person
    if incident.kind == "overcrowding":
        return case.unit == incident.unit and (incident.end is None or case.opened_at <= incident.end)
    if incident.kind == "unknown_credential":
        return (case.card == incident.card and incident.unit is not None
                and case.building == unit_buildings.get(incident.unit))
    return False


def score(cases: list[SeenCase], incidents: list[Incident], rules: CityRules, end: datetime,
          unit_buildings: dict[str, int]) -> dict[str, dict[str, Any]]:
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        period = period_days(kind, rules)
        mine = [c for c in cases if c.kind == kind]
        right = sum(1 for c in mine if any(matches(c, i, unit_buildings) for i in incidents))
        due = [i for i in incidents if i.kind == kind and _due(i, period, end)]
        delays = []
        for incident in due:
            found = [c.opened_at for c in cases if matches(c, incident, unit_buildings)]
            if found:
                delays.append((min(found) - incident.start) / timedelta(days=1))
        by_kind[kind] = {
            "precision": round(right / len(mine), 4) if mine else None,
            "recall": round(len(delays) / len(due), 4) if due else None,
            "median_delay_days": round(statistics.median(delays), 2) if delays else None,
            "max_delay_days": round(max(delays), 2) if delays else None,
            "period_days": period,
            "cases": len(mine),
            "incidents": sum(1 for i in incidents if i.kind == kind),
            "incidents_due": len(due),
        }
    return by_kind


def _due(incident: Incident, period: float, end: datetime) -> bool:
    ready = incident.start + timedelta(days=period)
    if ready + timedelta(days=1) >= end:
        return False
    return incident.fixed_at is None or incident.fixed_at > ready


def is_due(incident: Incident, period: float, end: datetime) -> bool:
    """Should a rule with this period have reported the incident by ``end``?"""
    return _due(incident, period, end)


def missed(cases: list[SeenCase], incidents: list[Incident], rules: CityRules, end: datetime,
           unit_buildings: dict[str, int]) -> list[Incident]:
    """Due incidents no case pointed at (for the report's diagnosis)."""
    return [i for i in incidents if _due(i, period_days(i.kind, rules), end)
            and not any(matches(c, i, unit_buildings) for c in cases)]


def wrong(cases: list[SeenCase], incidents: list[Incident], unit_buildings: dict[str, int]) -> list[SeenCase]:
    """Cases that point at no incident."""
    return [c for c in cases if not any(matches(c, i, unit_buildings) for i in incidents)]


def targets_met(kinds: dict[str, dict[str, Any]]) -> dict[str, bool]:
    out = {}
    for kind in TARGET_KINDS:
        k = kinds[kind]
        out[f"{kind}.precision>={TARGET_RATIO}"] = k["precision"] is None or k["precision"] >= TARGET_RATIO
        out[f"{kind}.recall>={TARGET_RATIO}"] = k["recall"] is not None and k["recall"] >= TARGET_RATIO
        out[f"{kind}.median_delay<=period+1"] = (k["median_delay_days"] is not None
                                                 and k["median_delay_days"] <= k["period_days"] + 1)
    return out


def rates_json(true: dict[str, TrueRatio], computed: dict[str, tuple[int, int] | None]) -> dict[str, dict[str, Any]]:
    def value(n: int, d: int) -> float | None:
        return round(n / d, 4) if d else None

    out = {}
    for name in RATES:
        t = true[name]
        c = computed.get(name)
        out[name] = {"true": value(t.numerator, t.denominator), "computed": value(*c) if c else None,
                     "true_counts": [t.numerator, t.denominator], "computed_counts": list(c) if c else None}
    return out
