"""Field rules shared by both imports, with the registry's own shapes of
codes, phones and card numbers (server/registry/service.py), so that a row
passing here is one the registry functions accept; apply.py still turns any
refusal into a row error."""

from __future__ import annotations

from rentgate.lang import tr
from server.registry.imports.cells import CellProblem
from server.registry.service import CODE, EM4100, PHONE


def code(value: str) -> str:
    if not CODE.fullmatch(value):
        raise CellProblem(tr("编码只能由 1 到 32 个字母、数字或 . _ - 组成，请去掉空格和其他符号",
                              "a code is 1 to 32 letters, digits, '.', '_' or '-'; remove spaces and other signs"))
    return value


def phone(value: str | None) -> str | None:
    if value is not None and (len(value) > 20 or not PHONE.fullmatch(value)):
        raise CellProblem(tr("不是电话号码：只能有数字，可带 + - 和空格，最多 20 位",
                              "not a phone number: digits only, with + - and spaces allowed, at most 20"))
    return value


def length(value: str | None, max_len: int) -> str | None:
    if value is not None and len(value) > max_len:
        raise CellProblem(tr(f"超过 {max_len} 个字，请缩短", f"longer than {max_len} characters; shorten it"))
    return value


def em4100(value: str) -> str:
    card = value.replace(" ", "").upper()
    if not EM4100.fullmatch(card):
        raise CellProblem(tr("EM4100 卡号是 10 位十六进制数（0-9 和 A-F），请核对卡上的号码",
                              "an EM4100 card number is 10 hexadecimal digits (0-9, A-F); check the number on the card"))
    return card
