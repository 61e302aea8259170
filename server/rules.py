"""The city's rules: every threshold reconciliation, capacity and grading use,
with the defaults of docs/registry.md (from DOMAIN.md). A city overrides any
of them in a TOML file named by ``RENTGATE_RULES_FILE``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rentgate.zones import check_zone
from server.errors import SettingsError


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GradeRules(_Rules):
    """Points per fact; a unit's grade is the highest whose threshold its
    score reaches. See docs/registry.md, "Grades"."""

    points_unregistered_occupant: int = Field(default=4, ge=0)
    points_overcrowding: int = Field(default=6, ge=0)
    points_address_mismatch: int = Field(default=2, ge=0)
    points_presumed_departure: int = Field(default=1, ge=0)
    points_unknown_credential: int = Field(default=1, ge=0)
    points_credential_unused: int = Field(default=1, ge=0)
    points_pledge_missing: int = Field(default=3, ge=0)
    # Each case of the unit closed in the history window, resolved or not.
    points_per_past_case: int = Field(default=1, ge=0)
    past_case_points_max: int = Field(default=4, ge=0)
    history_days: int = Field(default=180, ge=1)
    # Score at or above: 一般 (normal), 重点 (watch), 严控 (strict).
    normal_from: int = Field(default=3, ge=1)
    watch_from: int = Field(default=6, ge=1)
    strict_from: int = Field(default=10, ge=1)


def _per_key(value: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A table with exactly ``keys``, each a positive number."""
    if set(value) != set(keys):
        raise ValueError(f"needs exactly the keys {', '.join(keys)}")
    for key, number in value.items():
        if not number > 0:
            raise ValueError(f"{key} must be greater than 0")
    return value


class CityRules(_Rules):
    timezone: str = "Asia/Shanghai"
    # A new occupant must be registered within this many days of the first
    # evidence of living at a unit (MPS order No. 24 of 1995).
    registration_deadline_days: float = Field(default=3.0, gt=0)
    # No evidence for this long: presumed departed, the landlord is asked.
    silence_days: float = Field(default=30.0, gt=0)
    # No answer from the landlord for this long: the registration ends.
    answer_days: float = Field(default=7.0, gt=0)
    # Evidence on this many distinct local days makes an occupant, fewer a visitor.
    living_min_days: int = Field(default=2, ge=1)
    # A registration's credential never seen this long after it was issued.
    credential_unused_days: float = Field(default=30.0, gt=0)
    # Unknown credential: a case once read on this many distinct days.
    unknown_credential_min_days: int = Field(default=1, ge=1)
    # Overcrowding (群租): at least this much living area per person and at
    # most this many adults per room.
    area_per_person_m2: float = Field(default=5.0, gt=0)
    persons_per_room: int = Field(default=2, ge=1)
    # Patrol interval per grade (issue 5): trusted, normal, watch, strict.
    patrol_days: dict[str, int] = Field(
        default_factory=lambda: {"trusted": 21, "normal": 14, "watch": 7, "strict": 3})
    # Staffing: one coordinator per this many residents (seed 001's target).
    residents_per_coordinator: int = Field(default=500, ge=1)
    # Deadline of each task step, in days from entering it: dispatch a
    # reported task, handle a dispatched one, verify, evaluate, archive.
    task_step_days: dict[str, float] = Field(
        default_factory=lambda: {"reported": 1.0, "dispatched": 3.0, "handled": 2.0, "verified": 3.0,
                                 "evaluated": 7.0})
    # Printed plates stay valid this long (days); 0: they do not expire.
    plate_valid_days: int = Field(default=1826, ge=0)
    # Unit door cameras (docs/reconcile.md, "Camera evidence"): how much a
    # camera's figures count (0 turns camera evidence off; a camera day
    # counts as this many days, an occupancy estimate is scaled by it), how
    # many days they must show it, the window of nights the occupancy
    # estimate is taken over, and the local hour a camera day begins at
    # (when the running in/out count starts again from 0).
    camera_evidence_weight: float = Field(default=1.0, ge=0, le=1)
    camera_min_days: int = Field(default=4, ge=1)
    camera_window_days: int = Field(default=14, ge=1, le=366)
    camera_day_start_hour: int = Field(default=4, ge=0, le=23)
    grades: GradeRules = Field(default_factory=GradeRules)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("patrol_days")
    @classmethod
    def _patrol_days(cls, value: dict[str, int]) -> dict[str, int]:
        return _per_key(value, ("trusted", "normal", "watch", "strict"))

    @field_validator("task_step_days")
    @classmethod
    def _step_days(cls, value: dict[str, float]) -> dict[str, float]:
        return _per_key(value, ("reported", "dispatched", "handled", "verified", "evaluated"))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def capacity(self, area_m2: float, rooms: int) -> int:
        """How many people a unit may hold: the smaller of its area over the
        minimum per person and its rooms times the maximum per room."""
        by_area = int(area_m2 // self.area_per_person_m2) if area_m2 > 0 else 0
        return max(0, min(by_area, rooms * self.persons_per_room))


def load_rules(path: str | Path | None) -> CityRules:
    if path is None:
        return CityRules()
    try:
        raw: dict[str, Any] = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"rules file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"rules file {path}: {exc}") from exc
    try:
        return CityRules(**raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"rules file {path}: {problems}") from exc
