"""Ways to tamper with an export file, each a function from its lines to
new lines: used by the server's verifier tests and the independent one's.
The export they expect starts at record 10 with checkpoints at 10, 20, 30."""

from __future__ import annotations

import json

Lines = list[bytes]


def record_line(lines: Lines, seq: int) -> int:
    """The index of record ``seq`` in an export starting at 10 with three checkpoints."""
    return 1 + 3 + seq - 10


def changed(lines: Lines) -> Lines:
    i = record_line(lines, 14)
    return [*lines[:i], lines[i].replace(b"A-14", b"A-99"), *lines[i + 1:]]


def deleted(lines: Lines) -> Lines:
    i = record_line(lines, 14)
    return [*lines[:i], *lines[i + 1:]]


def reordered(lines: Lines) -> Lines:
    i = record_line(lines, 14)
    return [*lines[:i], lines[i + 1], lines[i], *lines[i + 2:]]


def header_dropped(lines: Lines) -> Lines:
    return lines[1:]


def last_record_dropped(lines: Lines) -> Lines:
    return lines[:-1]


def first_record_dropped_and_header_moved(lines: Lines) -> Lines:
    """The careful forger: drop record 10, claim the file starts at 11."""
    header = json.loads(lines[0])
    header["first_seq"] = 11
    return [json.dumps(header).encode() + b"\n", *lines[1:4], *lines[5:]]


def last_record_dropped_and_header_shrunk(lines: Lines) -> Lines:
    header = json.loads(lines[0])
    header["size"] = 29
    return [json.dumps(header).encode() + b"\n", *lines[1:-1]]


def end_checkpoint_dropped(lines: Lines) -> Lines:
    header = json.loads(lines[0])
    header["checkpoints"] = 2
    return [json.dumps(header).encode() + b"\n", *lines[1:3], *lines[4:]]


def line_added(lines: Lines) -> Lines:
    return [*lines, lines[-1]]


def previous_hash_changed(lines: Lines) -> Lines:
    header = json.loads(lines[0])
    header["previous_hash"] = "ab" * 32
    return [json.dumps(header).encode() + b"\n", *lines[1:]]


def no_final_newline(lines: Lines) -> Lines:
    return [*lines[:-1], lines[-1].rstrip(b"\n")]


ALL = [changed, deleted, reordered, header_dropped, last_record_dropped, first_record_dropped_and_header_moved,
       last_record_dropped_and_header_shrunk, end_checkpoint_dropped, line_added, previous_hash_changed,
       no_final_newline]
