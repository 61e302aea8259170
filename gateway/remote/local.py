"""The gateway's own settings file, kept both validated and as parsed: a
remote configuration is merged over the parsed document (gateway.config.
parse_remote), so the file's identity, login and data folder always win."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, parse_config, parse_remote
from gateway.errors import ConfigError, ConfigProblem


@dataclass(frozen=True)
class LocalSettings:
    path: Path
    doc: dict[str, Any]  # the TOML as parsed; relative paths not yet resolved
    config: GatewayConfig  # the file alone, validated

    def with_remote(self, settings: dict[str, Any]) -> GatewayConfig:
        """The configuration ``settings`` make of this file; ConfigError if they do not fit."""
        return parse_remote(self.doc, settings, base_dir=self.path.parent)


def load_local(path: str | Path) -> LocalSettings:
    """Read and validate the settings file (ConfigError naming each problem)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [ConfigProblem("<file>", f"cannot read: {exc.strerror or exc}")]) from exc
    config = parse_config(text, source=str(path), base_dir=path.parent)  # raises with line numbers
    return LocalSettings(path, tomllib.loads(text), config)
