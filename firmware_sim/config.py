"""The building simulator's configuration (a TOML file), validated strictly."""

from __future__ import annotations

import random
import tomllib
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from firmware_sim.errors import SimConfigError

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
TagId = Annotated[int, Field(ge=0, le=0xFFFFFFFF)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoiseConfig(_Strict):
    """Per-frame probabilities of line trouble (see :class:`firmware_sim.em4100_reader.Noise`)."""

    bad_checksum: Probability = 0.0
    split: Probability = 0.0
    garbage: Probability = 0.0
    extra_repeats: Probability = 0.0


class DoorConfig(_Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    # A stable symlink to the door's pty (relative paths: from the working
    # directory), so a gateway config can name it before the simulator runs.
    link: str | None = None


class TenantsConfig(_Strict):
    """Either ``count`` tenants with tag ids drawn from the building seed, or explicit ``tag_ids``."""

    count: Annotated[int, Field(ge=1, le=100_000)] | None = None
    tag_ids: Annotated[list[TagId], Field(min_length=1)] | None = None
    version: Annotated[int, Field(ge=0, le=0xFF)] = 0x14

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.count is None) == (self.tag_ids is None):
            raise ValueError("give exactly one of 'count' or 'tag_ids'")
        if self.tag_ids is not None and len(set(self.tag_ids)) != len(self.tag_ids):
            raise ValueError("tag_ids must be unique")
        return self


class SwipesConfig(_Strict):
    """When swipes happen. ``poisson``: random arrivals at ``rate_per_min`` for the
    whole building; ``burst``: each door swipes as fast as a reader allows,
    cycling through tenants. Stops after ``total`` swipes or ``duration_s``,
    whichever comes first (neither: until stopped)."""

    pattern: Literal["poisson", "burst"] = "poisson"
    rate_per_min: Annotated[float, Field(gt=0, le=60_000)] = 6.0
    total: Annotated[int, Field(ge=1)] | None = None
    duration_s: Annotated[float, Field(gt=0)] | None = None
    start_delay_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    repeats: Annotated[int, Field(ge=1, le=100)] = 3
    repeat_interval_s: Annotated[float, Field(ge=0, le=5)] = 0.1
    burst_gap_s: Annotated[float, Field(ge=0, le=60)] = 0.15
    # Longer than any gateway debounce window, so each swipe is a separate read.
    min_same_tag_gap_s: Annotated[float, Field(ge=0, le=3600)] = 1.5


class BuildingConfig(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    seed: int = 0
    doors: Annotated[list[DoorConfig], Field(min_length=1, max_length=256)]
    tenants: TenantsConfig
    swipes: SwipesConfig = SwipesConfig()
    noise: NoiseConfig = NoiseConfig()

    @model_validator(mode="after")
    def _unique_doors(self) -> Self:
        ids = [d.id for d in self.doors]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"door ids must be unique, repeated: {', '.join(dupes)}")
        links = [d.link for d in self.doors if d.link is not None]
        if len(set(links)) != len(links):
            raise ValueError("two doors share a link path")
        return self

    def tag_ids(self) -> list[int]:
        if self.tenants.tag_ids is not None:
            return list(self.tenants.tag_ids)
        assert self.tenants.count is not None
        rng = random.Random(f"{self.seed}:tenants")
        return rng.sample(range(1, 1 << 32), self.tenants.count)


def load_config(path: str | Path) -> BuildingConfig:
    """Read and validate a TOML file; errors name the file and the key path."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise SimConfigError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SimConfigError(str(path), f"not valid TOML: {exc}") from exc
    try:
        return BuildingConfig.model_validate(raw)
    except ValidationError as exc:
        raise SimConfigError(str(path), _describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)
