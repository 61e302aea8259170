"""What is wrong with a setting, in words an installer reads: pydantic's
error types turned into Chinese (or English with ``--lang en``) that say what
the value must be. Used for gateway settings files, simulator files and the
server's RENTGATE_* settings; an error type not listed keeps pydantic's own
English text, so nothing is ever hidden."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rentgate.lang import tr


def _limit(ctx: Mapping[str, Any], key: str) -> str:
    return str(ctx.get(key, "?"))


def explain(error: Mapping[str, Any]) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) in words."""
    kind = str(error.get("type", ""))
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    fallback = str(error.get("msg", kind))
    if kind == "missing":
        return tr("缺少这一项（必须填写）", "missing (it is required)")
    if kind == "extra_forbidden":
        return tr("没有这一项设置（是否拼写错了？）", "no such setting (a spelling mistake?)")
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return tr("应为整数", "must be a whole number")
    if kind in ("float_parsing", "float_type"):
        return tr("应为数字", "must be a number")
    if kind in ("bool_parsing", "bool_type"):
        return tr("应为 true 或 false", "must be true or false")
    if kind in ("string_type", "str_type"):
        return tr("应为文字（用引号括起来）", "must be text (in quotes)")
    if kind in ("list_type", "tuple_type"):
        return tr("应为列表 [ … ]", "must be a list [ … ]")
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return tr("应为一个表 { … } 或 [小节]", "must be a table { … } or a [section]")
    if kind == "greater_than_equal":
        return tr(f"不能小于 {_limit(ctx, 'ge')}", f"must be at least {_limit(ctx, 'ge')}")
    if kind == "greater_than":
        return tr(f"必须大于 {_limit(ctx, 'gt')}", f"must be greater than {_limit(ctx, 'gt')}")
    if kind == "less_than_equal":
        return tr(f"不能大于 {_limit(ctx, 'le')}", f"must be at most {_limit(ctx, 'le')}")
    if kind == "less_than":
        return tr(f"必须小于 {_limit(ctx, 'lt')}", f"must be less than {_limit(ctx, 'lt')}")
    if kind == "string_too_short":
        return tr(f"至少 {_limit(ctx, 'min_length')} 个字符", f"at least {_limit(ctx, 'min_length')} characters")
    if kind == "string_too_long":
        return tr(f"最多 {_limit(ctx, 'max_length')} 个字符", f"at most {_limit(ctx, 'max_length')} characters")
    if kind == "too_short":
        return tr(f"至少要有 {_limit(ctx, 'min_length')} 项", f"needs at least {_limit(ctx, 'min_length')} items")
    if kind == "too_long":
        return tr(f"最多 {_limit(ctx, 'max_length')} 项", f"at most {_limit(ctx, 'max_length')} items")
    if kind == "string_pattern_mismatch":
        return tr("格式不对（不能有空格、引号或斜杠，见文档中的示例）",
                  "not in the expected form (no spaces, quotes or slashes; see the examples in the docs)")
    if kind in ("literal_error", "enum"):
        choices = str(ctx.get("expected", "")).replace("'", "")
        return tr(f"只能是 {choices}", f"must be one of {choices}") if choices else fallback
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        choices = str(ctx.get("expected_tags", "")).replace("'", "")
        return tr(f"设备类型应为 {choices}", f"the device type must be one of {choices}") if choices else fallback
    if kind == "value_error":
        # Our own validators' text: already written for people.
        return fallback.removeprefix("Value error, ")
    return fallback
