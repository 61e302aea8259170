"""Memory over the soak: resident set sizes sampled every few seconds, and
the slope of a least-squares line through them.

A process the soak kills starts again with a fresh heap, so a line through
samples of several lives means nothing: the slope is fitted over one life,
the long ones (the soak never kills one gateway, one ingest worker and the
reconcile process, so theirs span the run), over the samples after the
warm-up; the steepest is reported.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the soak started
    rss_mb: float


def rss_mb(pid: int) -> float | None:
    """Resident set size of a live process in MiB (Linux /proc); None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def slope_per_hour(samples: list[Sample]) -> float | None:
    """MiB per hour of the least-squares line; None with fewer than 5 samples or no spread in time."""
    n = len(samples)
    if n < 5:
        return None
    mean_t = sum(s.t for s in samples) / n
    mean_y = sum(s.rss_mb for s in samples) / n
    var_t = sum((s.t - mean_t) ** 2 for s in samples)
    if var_t == 0:
        return None
    cov = sum((s.t - mean_t) * (s.rss_mb - mean_y) for s in samples)
    return cov / var_t * 3600


@dataclass
class MemoryLog:
    """Samples per process life, keyed ``(kind, name, incarnation)``."""

    lives: dict[tuple[str, str, int], list[Sample]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, name: str, incarnation: int, t: float, rss: float) -> None:
        self.lives[(kind, name, incarnation)].append(Sample(t, rss))

    def write_csv(self, path: Path) -> None:
        """Every sample, one row each (kind, name, incarnation, t, rss_mb), to look at a trend afterwards."""
        with open(path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["kind", "name", "incarnation", "t_s", "rss_mb"])
            for (kind, name, inc), samples in sorted(self.lives.items()):
                out.writerows([kind, name, inc, round(s.t, 1), round(s.rss_mb, 2)] for s in samples)

    def max_mb(self, kind: str) -> float | None:
        values = [s.rss_mb for (k, _, _), samples in self.lives.items() if k == kind for s in samples]
        return round(max(values), 1) if values else None

    def slope(self, kind: str, after_t: float) -> tuple[str | None, float | None, int]:
        """``(which life, MiB/h, samples used)``: the steepest slope after
        ``after_t`` among the lives of ``kind`` that span at least 80 % of the
        longest one (the processes the soak never kills)."""
        spans = {key: s[-1].t - s[0].t for key, s in self.lives.items() if key[0] == kind and s}
        if not spans:
            return None, None, 0
        longest = max(spans.values())
        best: tuple[str | None, float | None, int] = (None, None, 0)
        for key, span in spans.items():
            if span < 0.8 * longest:
                continue
            used = [s for s in self.lives[key] if s.t >= after_t]
            value = slope_per_hour(used)
            if value is not None and (best[1] is None or value > best[1]):
                best = (f"{key[1]}#{key[2]}", round(value, 2), len(used))
        return best
