"""A progress bar on stderr, never stdout (stdout carries the --json line).
On a terminal: one line redrawn in place, at most ten times a second; into a
file or pipe: one line per tenth of the work, so logs stay short."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rentgate.lang import tr

_REDRAW_S = 0.1
_WIDTH = 24


class Progress:
    def __init__(self, phase: str, total: int, *, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.phase = phase
        self.total = max(total, 0)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.done = 0
        self.started = time.monotonic()
        self._drawn_at = 0.0
        self._next_tenth = 1

    def tick(self, n: int) -> None:
        self.done = min(self.total, self.done + n)
        if self.tty:
            now = time.monotonic()
            if now - self._drawn_at >= _REDRAW_S or self.done == self.total:
                self._drawn_at = now
                self.stream.write("\r" + self.line() + "\x1b[K")
                self.stream.flush()
        elif self.total:
            crossed = False
            while self._next_tenth <= 10 and self.done * 10 >= self._next_tenth * self.total:
                self._next_tenth += 1
                crossed = True
            if crossed:
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def finish(self) -> None:
        self.done = self.total
        if self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K\n")
        elif self._next_tenth <= 10:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        share = self.done / self.total if self.total else 1.0
        filled = int(share * _WIDTH)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        eta = tr("完成", "done") if self.done >= self.total else tr(f"还需 {_clock(left)}", f"ETA {_clock(left)}")
        return (f"{self.phase:<10} [{bar}] {self.done:,}/{self.total:,} {tr('行', 'rows')}  "
                f"{rate:,.0f} {tr('行/秒', 'rows/s')}  {eta}")


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}:{seconds:02d}" if minutes else f"{seconds}s"
