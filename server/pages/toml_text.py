"""A gateway's remote settings (JSON as the server stores them) written as
TOML, the way the gateway's own settings file reads, for the configuration
page's text box. The standard library reads TOML but does not write it;
settings are plain tables, arrays of tables and scalars, which this covers.
JSON null has no TOML form: such keys are left out (a gateway setting left
out means its default, as null would)."""

from __future__ import annotations

import json
import re
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes (\" \\ \n \uXXXX ...) are TOML's basic-string escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"{type(value).__name__} has no TOML form")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _emit(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    for k, v in table.items():
        if v is not None and not isinstance(v, dict) and not _is_table_array(v):
            lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in table.items():
        if isinstance(v, dict):
            lines += ["", "[" + ".".join(_key(p) for p in [*path, k]) + "]"]
            _emit(v, [*path, k], lines)
    for k, v in table.items():
        if _is_table_array(v):
            for item in v:
                lines += ["", "[[" + ".".join(_key(p) for p in [*path, k]) + "]]"]
                _emit(item, [*path, k], lines)


def dumps(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    _emit(doc, [], lines)
    return "\n".join(lines).strip("\n") + ("\n" if lines else "")
