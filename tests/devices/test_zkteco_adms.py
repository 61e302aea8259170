"""The ZKTeco ADMS parsers and formatters, from bodies written after the
published PUSH protocol, and fuzzed."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.hikvision import VendorPayloadError
from devices.zkteco_adms import (
    command_line,
    options_block,
    parse_attlog,
    parse_command_results,
    parse_serial,
    user_delete,
    user_update,
)

ATTLOG = (b"1001\t2024-03-01 10:15:30\t0\t15\t0\t0\t0\n"
          b"1002\t2024-03-01 10:16:02\t1\t2\t0\t0\t0\t255\t36.5\n"
          b"\n"
          b"1003\t2000-01-01 00:00:07\t0\t1\n")
RTLOG = (b"time=2024-03-01 10:17:00\tpin=0\tcardno=3265421170\teventaddr=1\tevent=0\tinoutstatus=0\t"
         b"verifytype=4\tindex=88\n")


def test_attendance_lines_become_reads_of_the_person_number_with_the_terminal_time() -> None:
    batch = parse_attlog(ATTLOG)
    assert [r.pin for r in batch.records] == ["1001", "1002", "1003"]
    assert batch.lines == 3 and batch.bad_lines == []
    first = batch.records[0]
    assert (first.credential.format, first.credential.value) == ("terminal_person", "1001")
    assert first.time == datetime(2024, 3, 1, 10, 15, 30) and first.verify == 15 and first.granted is True
    # A terminal whose clock was never set: the record is kept as it is.
    assert batch.records[2].time == datetime(2000, 1, 1, 0, 0, 7)


def test_an_rtlog_record_with_a_card_is_a_read_of_the_card() -> None:
    [record] = parse_attlog(RTLOG).records
    assert (record.credential.format, record.credential.value) == ("raw", "C2A25F72")
    assert record.granted is True


def test_bad_lines_are_counted_and_the_rest_kept() -> None:
    batch = parse_attlog(b"1001\t2024-03-01 10:15:30\t0\t15\nnot a record\n\xff\xfe\t\x01\n1002\tgarbage-time\t0\t1\n")
    assert [r.pin for r in batch.records] == ["1001", "1002"] and batch.lines == 4
    assert [line for line, _ in batch.bad_lines] == [2, 3]
    assert batch.records[1].time is None and batch.records[1].time_text == "garbage-time"


def test_the_same_record_twice_has_the_same_key_and_two_reads_do_not() -> None:
    a, b = parse_attlog(ATTLOG).records[:2]
    assert parse_attlog(ATTLOG).records[0].key == a.key and a.key != b.key


def test_gbk_names_and_oversize_or_binary_bodies() -> None:
    assert parse_attlog("1001\t2024-03-01 10:15:30\t0\t1\t张三\n".encode("gb18030")).records[0].pin == "1001"
    with pytest.raises(VendorPayloadError, match="over the limit"):
        parse_attlog(b"1\t2024-01-01 00:00:00\n" * 60_000)
    with pytest.raises(VendorPayloadError, match="binary"):
        parse_attlog(b"\x00\x01\x02")


def test_the_options_block_names_the_stamps_the_gateway_holds() -> None:
    block = options_block("CJDE193560303", stamps={"ATTLOG": "774633", "OPERLOG": "x;drop"})
    lines = block.splitlines()
    assert lines[0] == "GET OPTION FROM: CJDE193560303"
    assert "ATTLOGStamp=774633" in lines and "OPERLOGStamp=None" in lines and "Realtime=1" in lines
    assert any(line.startswith("TransFlag=") for line in lines)


def test_commands_and_their_results() -> None:
    update = user_update("1001", name="Wang", card="C2A25F72")
    assert update == "DATA UPDATE USERINFO PIN=1001\tName=Wang\tPri=0\tPasswd=\tCard=3265421170\tGrp=1"
    assert command_line(7, user_delete("1001")) == "C:7:DATA DELETE USERINFO PIN=1001"
    results = parse_command_results(b"ID=7&Return=0&CMD=DATA\nID=8&Return=-1002&CMD=DATA\nnonsense\n")
    assert [(r.id, r.code, r.ok) for r in results] == [(7, 0, True), (8, -1002, False)]


@pytest.mark.parametrize("call", [
    lambda: user_update("10 01"), lambda: user_update("1", name="a\tPri=14"), lambda: user_update("1", card="xyz"),
    lambda: user_update("1", privilege=3), lambda: command_line(0, "INFO"), lambda: command_line(1, "A\nC:2:B"),
    lambda: parse_serial("../etc"), lambda: parse_serial(None),
])
def test_values_that_would_inject_fields_or_lines_are_refused(call: object) -> None:
    with pytest.raises(VendorPayloadError):
        call()  # type: ignore[operator]


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=600))
def test_random_bytes_never_raise_anything_else(body: bytes) -> None:
    for parse in (parse_attlog, parse_command_results):
        try:
            parse(body)
        except VendorPayloadError:
            pass


_line = st.lists(st.one_of(st.text(max_size=12), st.sampled_from(["1001", "2024-03-01 10:15:30", "0", "15",
                                                                   "cardno=12", "pin=7", "time=x", "="])),
                 max_size=9).map("\t".join)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_line, max_size=8))
def test_mangled_records_never_raise_and_every_line_is_accounted_for(lines: list[str]) -> None:
    body = "\n".join(lines).encode("utf-8", errors="replace")
    try:
        batch = parse_attlog(body)
    except VendorPayloadError:
        return
    assert len(batch.records) + len(batch.bad_lines) == batch.lines
