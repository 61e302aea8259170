"""The building simulator's configuration (a TOML file), validated strictly."""

from __future__ import annotations

import random
import tomllib
from pathlib import Path
from typing import Annotated, Literal, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from firmware_sim.errors import SimConfigError
from rentgate.lang import tr
from rentgate.validation_words import explain

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


# Doors and lines are named as installers name them (正门, 1号线): any
# printable text without spaces, quotes or slashes, at most 64 characters.
NAME_PATTERN = r"^[^\s/\\\"'\x00-\x1f\x7f]{1,64}$"


class DoorConfig(_Strict):
    id: Annotated[str, Field(pattern=NAME_PATTERN)]
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
    return _load(path, BuildingConfig)


_Model = TypeVar("_Model", bound=BaseModel)


def _load(path: str | Path, model: type[_Model]) -> _Model:
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise SimConfigError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SimConfigError(str(path), f"not valid TOML: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise SimConfigError(str(path), _describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or tr("（最外层）", "(top level)")
        lines.append(f"{where}: {explain(err)}")
    return "; ".join(lines)


# ---------------------------------------------------------------------- OSDP building

def parse_card(text: str) -> tuple[int, int]:
    """``"90:324"`` (Wiegand 26 facility and card, the credential value the
    gateway reports) as ``(90, 324)``; ValueError if it does not fit."""
    facility_text, _, card_text = text.partition(":")
    facility, card = int(facility_text), int(card_text)
    if not (0 <= facility <= 0xFF and 0 <= card <= 0xFFFF):
        raise ValueError(f"card {text!r}: facility must be 0..255 and card 0..65535")
    return facility, card


def _valid_card(text: str) -> str:
    parse_card(text)
    return text


CardText = Annotated[str, Field(pattern=r"^[0-9]{1,3}:[0-9]{1,5}$"), AfterValidator(_valid_card)]
DoorId = Annotated[str, Field(pattern=NAME_PATTERN)]
Seconds = Annotated[float, Field(gt=0, le=3600)]


class OsdpLineConfig(_Strict):
    id: DoorId
    # A stable symlink to the line's pty, as for the EM4100 doors' ``link``.
    link: str | None = None
    channel_id: Annotated[int, Field(ge=1, le=255)] = 1


class OsdpDoorConfig(_Strict):
    """A door and its reader: ``address`` on ``line``; the lock on output 0, the contact on input 0."""

    id: DoorId
    line: DoorId
    address: Annotated[int, Field(ge=0, le=126)]
    # The reader's secure channel key (32 hex digits); with ``install_mode``
    # the reader starts keyless and keeps the key the gateway installs.
    scbk: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{32}$")] | None = None
    install_mode: bool = False
    led: bool = True
    buzzer: bool = True

    @model_validator(mode="after")
    def _key_or_install(self) -> Self:
        if self.install_mode and self.scbk is not None:
            raise ValueError("a reader in install_mode has no scbk yet")
        return self


class OsdpTenantsConfig(_Strict):
    """Either ``count`` cards (numbers drawn from the seed, on ``facility``) or explicit ``cards``."""

    count: Annotated[int, Field(ge=1, le=65_536)] | None = None
    facility: Annotated[int, Field(ge=0, le=0xFF)] = 90
    cards: Annotated[list[CardText], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.count is None) == (self.cards is None):
            raise ValueError("give exactly one of 'count' or 'cards'")
        if self.cards is not None:
            if len(set(self.cards)) != len(self.cards):
                raise ValueError("cards must be unique")
        return self


class TrafficConfig(_Strict):
    """Normal entries. ``poisson``: random arrivals at ``rate_per_min`` for the
    whole building; ``burst``: each door one entry after another,
    ``burst_gap_s`` apart; ``none``: only the script. Stops after ``total``
    entries or ``duration_s``, whichever first (neither: until stopped,
    except ``none``, which ends with the script)."""

    pattern: Literal["poisson", "burst", "none"] = "poisson"
    rate_per_min: Annotated[float, Field(gt=0, le=6000)] = 6.0
    total: Annotated[int, Field(ge=1)] | None = None
    duration_s: Seconds | None = None
    start_delay_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    burst_gap_s: Annotated[float, Field(ge=0, le=60)] = 0.5


class PersonConfig(_Strict):
    push_within_s: Seconds = 1.0
    open_s_min: Seconds = 2.0
    open_s_max: Seconds = 4.0

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.open_s_min > self.open_s_max:
            raise ValueError("open_s_min must not exceed open_s_max")
        return self


class _Step(_Strict):
    at_s: Annotated[float, Field(ge=0, le=86_400)]  # from the start of the run
    door: DoorId


class EnterStep(_Step):
    """A tenant enters (``card``: a given one; default: any tenant's)."""

    action: Literal["enter"]
    card: CardText | None = None


class RevokedStep(_Step):
    """A card the gateway must deny (a tenancy that ended): the person leaves."""

    action: Literal["revoked"]
    card: CardText


class ForcedStep(_Step):
    """The door opens without any unlock, for ``open_s``."""

    action: Literal["forced"]
    open_s: Seconds = 3.0


class HeldOpenStep(_Step):
    """A legitimate entry, then the door stays open ``open_s`` (default:
    ``held_open_s`` + 3 s)."""

    action: Literal["held_open"]
    card: CardText | None = None
    open_s: Seconds | None = None


class UnplugStep(_Step):
    """The reader's cable is cut for ``unplugged_s``, then plugged back; no
    one uses the door meanwhile. libosdp notices after about 8 s: only an
    unplug of 10 s or more is expected to show as ``reader_offline``."""

    action: Literal["unplug"]
    unplugged_s: Seconds = 12.0


ScriptStep = Annotated[EnterStep | RevokedStep | ForcedStep | HeldOpenStep | UnplugStep,
                       Field(discriminator="action")]


class OsdpBuildingConfig(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    seed: int = 0
    # The gateway's held-open time, which the held-open script must exceed.
    held_open_s: Seconds = 30.0
    lines: Annotated[list[OsdpLineConfig], Field(min_length=1, max_length=64)]
    doors: Annotated[list[OsdpDoorConfig], Field(min_length=1, max_length=1024)]
    tenants: OsdpTenantsConfig
    traffic: TrafficConfig = TrafficConfig()
    person: PersonConfig = PersonConfig()
    script: list[ScriptStep] = []

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        lines = [line.id for line in self.lines]
        if len(set(lines)) != len(lines):
            raise ValueError("line ids must be unique")
        links = [line.link for line in self.lines if line.link is not None]
        if len(set(links)) != len(links):
            raise ValueError("two lines share a link path")
        doors = [d.id for d in self.doors]
        if len(set(doors)) != len(doors):
            raise ValueError("door ids must be unique")
        seats = [(d.line, d.address) for d in self.doors]
        if len(set(seats)) != len(seats):
            raise ValueError("two doors share a reader address on one line")
        for door in self.doors:
            if door.line not in lines:
                raise ValueError(f"door {door.id}: no line {door.line!r}")
        for index, step in enumerate(self.script):
            if step.door not in doors:
                raise ValueError(f"script.{index}: no door {step.door!r}")
            if isinstance(step, HeldOpenStep) and step.open_s is not None and step.open_s <= self.held_open_s:
                raise ValueError(f"script.{index}: open_s must exceed held_open_s ({self.held_open_s})")
        return self

    def cards(self) -> list[str]:
        if self.tenants.cards is not None:
            return list(self.tenants.cards)
        assert self.tenants.count is not None
        rng = random.Random(f"{self.seed}:osdp-tenants")
        return [f"{self.tenants.facility}:{n}" for n in rng.sample(range(1, 1 << 16), self.tenants.count)]


def load_osdp_config(path: str | Path) -> OsdpBuildingConfig:
    """Read and validate an OSDP building's TOML file; errors name the file and the key path."""
    return _load(path, OsdpBuildingConfig)
