"""Settings for local access decisions (the ``[access]`` table of a gateway config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rentgate import signing, wire


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AntiPassbackPair(_Model):
    """Two doors (or two sides of one door, given separate door ids) a person
    must use in turn: in, out, in ... A second entry without an exit is denied."""

    entry: wire.DeviceId
    exit: wire.DeviceId
    # Forget where people are after this long (e.g. a nightly reset), so one
    # missed exit does not lock a tenant out for good. None: never forget.
    forget_after_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _distinct(self) -> AntiPassbackPair:
        if self.entry == self.exit:
            raise ValueError(f"entry and exit are the same door {self.entry!r}")
        return self


class AccessConfig(_Model):
    # key id -> Ed25519 public key, PEM or base64 of the raw 32 bytes. Several
    # keys let the server rotate: add the new key here first, then sign with it.
    public_keys: dict[wire.KeyId, str] = Field(default_factory=dict)
    unlock_pulse_ms: int = Field(default=3000, ge=100, le=60_000)
    held_open_s: float = Field(default=30, gt=0)
    anti_passback: list[AntiPassbackPair] = Field(default_factory=list)
    # Removed credentials remembered to deny them as "revoked", newest kept.
    max_tombstones: int = Field(default=100_000, ge=0)

    @field_validator("public_keys")
    @classmethod
    def _keys_load(cls, value: dict[str, str]) -> dict[str, str]:
        for key_id, text in value.items():
            try:
                signing.load_public_key(text, source=key_id)
            except signing.SigningError as exc:
                # pydantic reports ValueErrors against the key's path.
                raise ValueError(str(exc)) from exc
        return value

    @field_validator("anti_passback")
    @classmethod
    def _door_in_one_pair(cls, value: list[AntiPassbackPair]) -> list[AntiPassbackPair]:
        seen: set[str] = set()
        for pair in value:
            for door in (pair.entry, pair.exit):
                if door in seen:
                    raise ValueError(f"door {door!r} is in more than one anti-passback pair")
                seen.add(door)
        return value

    def loaded_public_keys(self) -> dict[str, signing.Ed25519PublicKey]:
        return {key_id: signing.load_public_key(text, source=f"public_keys.{key_id}")
                for key_id, text in self.public_keys.items()}

    @property
    def unlock_pulse_s(self) -> float:
        return self.unlock_pulse_ms / 1000
