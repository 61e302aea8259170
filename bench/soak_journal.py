"""What a soak gateway generated: a journal written beside its outbox, read
back at the end to know exactly which ``(gateway_id, seq)`` the database must
hold.

Each append of generated card reads writes two lines, each with one
``write(2)`` on a file opened ``O_APPEND`` (a SIGKILL cannot tear it, and the
page cache keeps it when the process dies):

    A <incarnation> <first_i> <count>                 before Outbox.append
    C <incarnation> <first_i> <count> <first_seq>     after it returned (on disk)

Read ``i`` of incarnation ``k`` carries the credential value ``soak-k-i``, so
a stored row names the read it is. An ``A`` without its ``C`` is an append the
soak killed in flight: the outbox commits an append in one SQLite
transaction, so the database must hold all of its reads or none of them
(:func:`settle_in_doubt`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

VALUE_PREFIX = "soak-"


def credential_value(incarnation: int, i: int) -> str:
    return f"{VALUE_PREFIX}{incarnation}-{i}"


def parse_value(value: str) -> tuple[int, int] | None:
    """``(incarnation, i)`` of a soak credential value; None for anything else."""
    if not value.startswith(VALUE_PREFIX):
        return None
    inc, _, i = value[len(VALUE_PREFIX):].partition("-")
    if not (inc.isdigit() and i.isdigit()):
        return None
    return int(inc), int(i)


@dataclass(frozen=True)
class Append:
    """One append of ``count`` reads ``first_i..`` of an incarnation;
    ``first_seq`` is None while it is in doubt (no ``C`` line)."""

    incarnation: int
    first_i: int
    count: int
    first_seq: int | None

    def value_at(self, seq: int) -> str:
        assert self.first_seq is not None
        return credential_value(self.incarnation, self.first_i + seq - self.first_seq)


class JournalWriter:
    """The gateway process's side: unbuffered appends, one syscall per line."""

    def __init__(self, path: Path, incarnation: int) -> None:
        self.incarnation = incarnation
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def attempt(self, first_i: int, count: int) -> None:
        os.write(self._fd, f"A {self.incarnation} {first_i} {count}\n".encode())

    def committed(self, first_i: int, count: int, first_seq: int) -> None:
        os.write(self._fd, f"C {self.incarnation} {first_i} {count} {first_seq}\n".encode())

    def close(self) -> None:
        os.close(self._fd)


def read_journal(path: Path) -> list[Append]:
    """Every append in the journal, committed ones with their first seq. A
    line the reader cannot parse (there should be none) raises ValueError."""
    attempts: dict[tuple[int, int], int] = {}
    done: dict[tuple[int, int], tuple[int, int]] = {}
    if not path.exists():
        return []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        try:
            if parts[0] == "A" and len(parts) == 4:
                attempts[(int(parts[1]), int(parts[2]))] = int(parts[3])
                continue
            if parts[0] == "C" and len(parts) == 5:
                done[(int(parts[1]), int(parts[2]))] = (int(parts[3]), int(parts[4]))
                continue
        except (IndexError, ValueError):
            pass
        raise ValueError(f"{path}:{number}: not a journal line: {line!r}")
    out = [Append(inc, i, count, seq) for (inc, i), (count, seq) in done.items()]
    out += [Append(inc, i, count, None) for (inc, i), count in attempts.items() if (inc, i) not in done]
    return sorted(out, key=lambda a: (a.incarnation, a.first_i))


@dataclass(frozen=True)
class InDoubtOutcome:
    committed: int  # reads of in-doubt appends found whole in the database
    absent: int  # reads of in-doubt appends found not at all (killed before the commit)
    partial_missing: int  # reads missing from appends found in part: a torn transaction, counted as lost


def settle_in_doubt(in_doubt: Iterable[Append], found: dict[tuple[int, int], int]) -> InDoubtOutcome:
    """``found[(incarnation, first_i)]``: rows stored for that in-doubt append."""
    committed = absent = partial_missing = 0
    for a in in_doubt:
        n = found.get((a.incarnation, a.first_i), 0)
        if n >= a.count:
            committed += a.count
        elif n == 0:
            absent += a.count
        else:
            committed += a.count  # the append did commit: what is missing was lost after it
            partial_missing += a.count - n
    return InDoubtOutcome(committed, absent, partial_missing)
