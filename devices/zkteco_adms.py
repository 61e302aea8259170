"""ZKTeco "ADMS" (PUSH protocol) terminals: what they post and what they are told.

The terminal is the HTTP client, the gateway the server (docs/terminal-events.md):

- ``GET /iclock/cdata?SN=...&options=all`` at start: answered with an options
  block (:func:`options_block`) naming the last stamp the gateway holds per
  table, so the terminal uploads only what came after;
- ``POST /iclock/cdata?SN=...&table=ATTLOG&Stamp=...``: attendance records, one
  per line, tab-separated ``PIN, time, status, verify mode, work code, ...``
  (:func:`parse_attlog`), answered ``OK: <count>``; access-control firmware
  posts ``table=rtlog`` with ``key=value`` fields instead (``cardno=`` among
  them), read by the same function; ``OPERLOG`` and other tables are counted
  and acknowledged;
- ``GET /iclock/getrequest?SN=...``: the terminal polls for commands, answered
  ``C:<id>:<command>`` lines (:func:`command_line`, :func:`user_update`,
  :func:`user_delete`) or ``OK``;
- ``POST /iclock/devicecmd?SN=...``: the results, ``ID=<id>&Return=<code>&CMD=<kind>``
  one per line (:func:`parse_command_results`).

An ATTLOG record exists only when the terminal verified someone, so it is a
read the terminal granted. Its time is the terminal's local clock, without a
zone; it is kept as sent (a wrong clock does not make a record invalid).

Pure and bounded: bytes in, records out; a bad line is counted and skipped
(the terminal would otherwise post the whole batch again forever); a body that
is not a batch at all raises :class:`~devices.hikvision.VendorPayloadError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl

from devices.hikvision import VendorPayloadError, card_credential
from rentgate import wire

__all__ = [
    "AttlogBatch",
    "AttlogRecord",
    "CommandResult",
    "command_line",
    "decode_text",
    "options_block",
    "parse_attlog",
    "parse_command_results",
    "parse_serial",
    "user_delete",
    "user_update",
    "valid_stamp",
]

MAX_BODY = 1 << 20  # a terminal posts at most a few hundred records at once
MAX_LINE = 1024
_SN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PIN = re.compile(r"^[A-Za-z0-9]{1,24}$")
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S")
# Verify modes the protocol documents (VerifyType): what the person presented.
VERIFY_MODES = {0: "password", 1: "fingerprint", 2: "card", 3: "password", 4: "card", 15: "face"}


def _bad(reason: str) -> VendorPayloadError:
    return VendorPayloadError("zkteco", reason)


@dataclass(frozen=True, kw_only=True)
class AttlogRecord:
    """One verification the terminal recorded."""

    pin: str
    time_text: str  # as the terminal sent it: the dedupe key keeps it exact
    time: datetime | None  # the terminal's local time, naive; None if unreadable
    status: int | None
    verify: int | None
    card: str | None  # only in ``rtlog`` records of access-control firmware
    granted: bool | None

    @property
    def credential(self) -> wire.Credential:
        """The card if the record names one, else the terminal's person number."""
        if self.card:
            return card_credential(self.card)
        return wire.Credential(format="terminal_person", value=self.pin)

    @property
    def key(self) -> tuple[str, str, int | None, int | None, str | None]:
        """Equal for the same record posted twice, different for any two reads."""
        return (self.pin, self.time_text, self.status, self.verify, self.card)


@dataclass(frozen=True)
class AttlogBatch:
    records: list[AttlogRecord]
    bad_lines: list[tuple[int, str]]  # (line number, reason) of the lines skipped
    lines: int  # every non-empty line, the count the terminal expects back


@dataclass(frozen=True)
class CommandResult:
    id: int
    code: int  # 0 is success; negative codes are the terminal's errors
    kind: str  # the CMD field: DATA, CLEAR_LOG, INFO, ...

    @property
    def ok(self) -> bool:
        return self.code == 0


def parse_serial(value: str | None) -> str:
    """The ``SN`` query parameter, checked (it routes the records and names
    a file of state)."""
    if value is None or not _SN.fullmatch(value):
        raise _bad(f"missing or malformed SN {str(value)[:40]!r}")
    return value


def decode_text(body: bytes) -> str:
    """Terminals sold in China write names in GB18030 (GBK); newer ones UTF-8."""
    if len(body) > MAX_BODY:
        raise _bad(f"body of {len(body)} bytes over the limit of {MAX_BODY}")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("gb18030", errors="replace")


def parse_attlog(body: bytes) -> AttlogBatch:
    """The records of an ``ATTLOG`` or ``rtlog`` post."""
    text = decode_text(body)
    if "\x00" in text:
        raise _bad("binary data where attendance records were expected")
    records: list[AttlogRecord] = []
    bad: list[tuple[int, str]] = []
    lines = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        lines += 1
        try:
            records.append(_record(line))
        except VendorPayloadError as exc:
            bad.append((number, exc.reason))
    return AttlogBatch(records, bad, lines)


def _record(line: str) -> AttlogRecord:
    if len(line) > MAX_LINE:
        raise _bad(f"line of {len(line)} characters")
    fields = line.split("\t")
    if "=" in fields[0]:
        return _rtlog_record(dict(f.partition("=")[::2] for f in fields))
    if len(fields) < 2:
        raise _bad("an ATTLOG line needs at least a PIN and a time")
    pin = _pin(fields[0])
    time_text = fields[1].strip()
    return AttlogRecord(pin=pin, time_text=time_text, time=_time(time_text), status=_opt_int(fields, 2),
                        verify=_opt_int(fields, 3), card=None, granted=True)


def _rtlog_record(fields: dict[str, str]) -> AttlogRecord:
    fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
    card_text = fields.get("cardno", "")
    card = None if card_text in ("", "0") else card_text
    if card is not None and (len(card) > 32 or any(c not in "0123456789abcdefABCDEF" for c in card)):
        raise _bad(f"cardno {card[:40]!r} is not a card number")
    pin = fields.get("pin", "")
    if not card and pin in ("", "0"):
        raise _bad("an rtlog record without a person or a card")
    time_text = fields.get("time", "")
    event = _int_text(fields.get("event"))
    return AttlogRecord(pin=_pin(pin) if pin not in ("", "0") else "", time_text=time_text, time=_time(time_text),
                        status=_int_text(fields.get("inoutstatus")), verify=_int_text(fields.get("verifytype")),
                        card=card, granted=True if event == 0 else None)


def _pin(text: str) -> str:
    pin = text.strip()
    if not _PIN.fullmatch(pin):
        raise _bad(f"PIN {pin[:40]!r} is not a person number")
    return pin


def _opt_int(fields: list[str], index: int) -> int | None:
    return _int_text(fields[index]) if index < len(fields) else None


def _int_text(text: str | None) -> int | None:
    value = (text or "").strip()
    if value.isascii() and value.lstrip("-").isdigit() and len(value) < 12:
        return int(value)
    return None


def _time(text: str) -> datetime | None:
    # A terminal with an unset clock still reports valid reads: keep them.
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def parse_command_results(body: bytes) -> list[CommandResult]:
    """``ID=..&Return=..&CMD=..`` lines; lines without a usable ID are skipped
    (nothing to match them with)."""
    results: list[CommandResult] = []
    for line in decode_text(body).splitlines():
        fields = dict(parse_qsl(line.strip(), keep_blank_values=True, max_num_fields=16))
        cmd_id, code = _int_text(fields.get("ID")), _int_text(fields.get("Return"))
        if cmd_id is None or code is None:
            continue
        results.append(CommandResult(cmd_id, code, fields.get("CMD", "")[:32]))
    return results


def options_block(sn: str, *, stamps: dict[str, str], delay_s: int = 10, error_delay_s: int = 30,
                  timezone_h: int = 8, trans_flag: str = "TransData AttLog OpLog") -> str:
    """The answer to the terminal's first ``GET /iclock/cdata``: the stamps say
    what the gateway already has (``None``: nothing yet), ``Realtime=1`` asks
    for each record as it happens, ``Delay`` is the command poll interval."""
    lines = [
        f"GET OPTION FROM: {parse_serial(sn)}",
        f"ATTLOGStamp={_stamp(stamps.get('ATTLOG'))}",
        f"OPERLOGStamp={_stamp(stamps.get('OPERLOG'))}",
        f"ATTPHOTOStamp={_stamp(stamps.get('ATTPHOTO'))}",
        f"ErrorDelay={error_delay_s}",
        f"Delay={delay_s}",
        "TransTimes=00:00;14:05",
        "TransInterval=1",
        f"TransFlag={trans_flag}",
        f"TimeZone={timezone_h}",
        "Realtime=1",
        "Encrypt=None",
    ]
    return "\n".join(lines) + "\n"


def _stamp(value: str | None) -> str:
    return value if value is not None and value.isascii() and value.isdigit() else "None"


def valid_stamp(value: str | None) -> str | None:
    """A ``Stamp`` query parameter worth keeping (digits), else None."""
    return value if value is not None and value.isascii() and value.isdigit() and len(value) <= 20 else None


def command_line(cmd_id: int, command: str) -> str:
    """``C:<id>:<command>``, one line of a ``getrequest`` answer."""
    if not 0 < cmd_id < 2**31:
        raise _bad(f"command id {cmd_id} out of range")
    if not command or "\n" in command or "\r" in command or len(command) > 4096:
        raise _bad("a command is one non-empty line")
    return f"C:{cmd_id}:{command}"


def user_update(pin: str, *, name: str = "", card: str | None = None, privilege: int = 0,
                password: str = "", group: int = 1) -> str:
    """``DATA UPDATE USERINFO``: add or change a person on the terminal. ``card``
    is the wire contract's hex; the terminal wants the decimal number."""
    fields = [f"PIN={_pin(pin)}", f"Name={_field(name, 'Name', 24)}", f"Pri={privilege}",
              f"Passwd={_field(password, 'Passwd', 8)}", f"Card={_card_decimal(card) if card else ''}",
              f"Grp={group}"]
    if privilege not in (0, 14) or not 0 < group < 100:
        raise _bad("Pri is 0 (user) or 14 (administrator); Grp 1..99")
    return "DATA UPDATE USERINFO " + "\t".join(fields)


def user_delete(pin: str) -> str:
    return f"DATA DELETE USERINFO PIN={_pin(pin)}"


def _field(value: str, name: str, limit: int) -> str:
    if len(value) > limit or any(c in value for c in "\t\r\n=") or not value.isprintable():
        raise _bad(f"{name} must be at most {limit} printable characters without tabs or '='")
    return value


def _card_decimal(card_hex: str) -> str:
    value = card_hex.strip()
    if not value or len(value) > 16 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise _bad(f"card {value[:40]!r} is not a hex card number")
    return str(int(value, 16))
