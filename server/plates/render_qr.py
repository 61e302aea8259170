"""The plate's QR code as a module matrix, and its dark modules as runs.

Error correction M at least (segno raises it to Q or H when the URL fits in
the same version anyway): a door plate gets scratched, sun-faded and
photographed at an angle. Never a Micro QR: phones' camera apps do not all
read them.

Speed: segno picks the data mask by scoring all eight in pure Python, which
is 80 % of the time a sheet of plates takes (about 10 ms a code). Here segno
encodes once with mask 0, the eight candidates are scored with numpy by the
same rules (ISO/IEC 18004 7.8.3, exactly as segno counts them), and the
chosen mask is applied to the data modules with segno's own format-info
writer. The tests check, over many URLs, that the matrix is the one
``segno.make`` gives; if segno's internals ever move, the plain
``segno.make`` path is used instead."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import segno


@dataclass(frozen=True)
class QrMatrix:
    """Rows of 0/1 module values (1 dark), without the quiet zone."""

    rows: tuple[bytes, ...]
    version: int
    error: str
    mask: int

    @property
    def size(self) -> int:
        return len(self.rows)

    def runs(self) -> list[tuple[int, int, int]]:
        """(row, first column, length) of each horizontal run of dark
        modules, row by row: one rectangle per run instead of one per module."""
        size = self.size
        grid = np.zeros((size, size + 2), dtype=np.int8)
        grid[:, 1:-1] = np.frombuffer(b"".join(self.rows), dtype=np.uint8).reshape(size, size)
        change = np.diff(grid, axis=1)  # +1 where a run starts, -1 just after it ends
        rows, starts = np.nonzero(change == 1)
        _, ends = np.nonzero(change == -1)
        return list(zip(rows.tolist(), starts.tolist(), (ends - starts).tolist(), strict=True))


def _internals() -> Any:
    """segno's encoder module (untyped, not its public API: see above)."""
    return importlib.import_module("segno.encoder")


def _segno(url: str, mask: int | None = None) -> Any:
    return segno.make(url, error="m", micro=False, boost_error=True, mask=mask)


def _plain(url: str) -> QrMatrix:
    code = _segno(url)
    return QrMatrix(rows=tuple(bytes(row) for row in code.matrix), version=int(code.version),
                    error=str(code.error), mask=int(code.mask))


@lru_cache(maxsize=48)
def _function_layout(size: int) -> tuple[Any, Any, Any]:
    """For a symbol of ``size`` modules: the function-pattern values as
    segno scores them (format and version areas still 0), the data region,
    and the eight mask patterns restricted to it."""
    encoder = _internals()
    matrix = encoder.make_matrix(size, size)
    encoder.add_finder_patterns(matrix, size, size)
    encoder.add_alignment_patterns(matrix, size, size)
    function = np.array([list(row) for row in matrix], dtype=np.uint8)
    region = function > 1
    i, j = np.indices((size, size))
    patterns = ((i + j) % 2 == 0, i % 2 == 0, j % 3 == 0, (i + j) % 3 == 0, (i // 2 + j // 3) % 2 == 0,
                (i * j) % 2 + (i * j) % 3 == 0, ((i * j) % 2 + (i * j) % 3) % 2 == 0,
                ((i + j) % 2 + (i * j) % 3) % 2 == 0)
    return function, region, np.stack([(p & region).astype(np.uint8) for p in patterns])


def _penalties(candidates: Any) -> list[int]:
    """segno's penalty score (N1 + N2 + N3 + N4) of each of the stacked
    ``candidates`` (masks x size x size), its quirks included."""
    count, size, _ = candidates.shape
    # Rows, then columns, of every candidate: (masks, 2 * size, size).
    lines = np.concatenate((candidates, candidates.transpose(0, 2, 1)), axis=1)
    # N1: runs of 5+ same-coloured modules score (length - 2). A sentinel
    # (2) at both ends of every line keeps runs from joining across lines.
    padded = np.full((count, 2 * size, size + 2), 2, dtype=np.int8)
    padded[:, :, 1:-1] = lines
    flat = padded.ravel()
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    lengths = np.diff(edges)
    long = lengths >= 5
    n1 = np.bincount(edges[:-1][long] // padded[0].size, weights=lengths[long] - 2, minlength=count)
    # N2: 3 per 2x2 block of one colour (overlapping blocks each count).
    top_left = candidates[:, :-1, :-1]
    same = ((top_left == candidates[:, 1:, :-1]) & (top_left == candidates[:, :-1, 1:])
            & (top_left == candidates[:, 1:, 1:]))
    n2 = 3 * same.sum(axis=(1, 2))
    # N4: 10 per 5 % of dark modules away from half.
    share = candidates.sum(axis=(1, 2)) / (size * size)
    n4 = [10 * int(abs(float(d) * 100 - 50) / 5) for d in share]
    # N3: 1:1:3:1:1 finder-like patterns (dark light dark dark dark light
    # dark), 40 each when 4 light modules (or the edge) precede or follow.
    dark = lines.astype(bool)
    width = size - 6
    hits = (dark[..., 0:width] & ~dark[..., 1:width + 1] & dark[..., 2:width + 2] & dark[..., 3:width + 3]
            & dark[..., 4:width + 4] & ~dark[..., 5:width + 5] & dark[..., 6:width + 6])
    sums = np.zeros((count, 2 * size, size + 1), dtype=np.int16)
    np.cumsum(dark, axis=2, out=sums[..., 1:])
    idx = np.arange(width)
    light_before = sums[..., idx] == sums[..., np.maximum(idx - 4, 0)]
    light_after = sums[..., np.minimum(idx + 11, size)] == sums[..., idx + 7]
    scoring = hits & (light_before | light_after | (idx == 0) | (idx == size - 7))
    n3 = (40 * scoring.sum(axis=(1, 2))).tolist()
    # Patterns overlap only at shifts 4 and 6, which segno's search skips
    # after a scoring match: walk the (rare) lines with such pairs its way.
    masks_, lines_, places = np.nonzero(hits)
    close = (np.diff(places) < 7) & (np.diff(masks_) == 0) & (np.diff(lines_) == 0)
    for mask, line in {(int(masks_[i]), int(lines_[i])) for i in np.flatnonzero(close)}:
        row = np.flatnonzero(hits[mask, line]).tolist()
        n3[mask] -= 40 * int(scoring[mask, line].sum())
        resume = 0
        for place in row:
            if place < resume:
                continue
            if scoring[mask, line, place]:
                n3[mask] += 40
                resume = place + 7
            else:
                resume = place + 4
    return [int(n1[m]) + int(n2[m]) + n3[m] + n4[m] for m in range(count)]


def _fast(url: str) -> QrMatrix:
    encoder = _internals()
    code = _segno(url, mask=0)
    final0 = np.array([list(row) for row in code.matrix], dtype=np.uint8)
    size = final0.shape[0]
    function, region, masks = _function_layout(size)
    data = final0 ^ masks[0]  # unmasked data modules (0 outside the region's mask)
    base = np.where(region, 0, function).astype(np.uint8)
    unmasked = np.where(region, data, 0).astype(np.uint8)
    scores = _penalties(base[None] | (unmasked[None] ^ masks))
    # The first of the lowest, as segno breaks ties.
    best = scores.index(min(scores))
    if best == 0:
        rows = final0
    else:
        chosen = np.where(region, unmasked ^ masks[best], final0).astype(np.uint8)
        matrix = tuple(bytearray(row.tobytes()) for row in chosen)
        encoder.add_format_info(matrix, code.version, importlib.import_module("segno.consts").ERROR_MAPPING[code.error], best)
        rows = np.array([list(row) for row in matrix], dtype=np.uint8)
    return QrMatrix(rows=tuple(row.tobytes() for row in rows), version=int(code.version), error=str(code.error),
                    mask=best)


def qr_matrix(url: str) -> QrMatrix:
    try:
        return _fast(url)
    except (AttributeError, ImportError, KeyError, TypeError):  # segno's internals moved
        return _plain(url)


def modules_for(url: str) -> int:
    """Modules per side of the code for ``url`` (to validate a size before
    any plate is issued: every token of one key id has the same length)."""
    return int(_segno(url, mask=0).symbol_size(border=0)[0])
