"""The code: the fast mask choice gives exactly segno's symbol, and the
runs drawn are exactly the dark modules."""

from __future__ import annotations

import random
import string

import segno

from server.plates.render_qr import modules_for, qr_matrix


def urls(count: int) -> list[str]:
    rng = random.Random(5)
    alphabet = string.ascii_letters + string.digits + "-_"
    bases = ("http://127.0.0.1:8080", "https://rentgate.example.gov.cn", "https://x.cn",
             "https://plates.yuexiu.gz.gov.cn/rentgate")
    return [f"{rng.choice(bases)}/p/k{rng.randint(1, 99)}." + "".join(rng.choice(alphabet) for _ in range(39))
            for _ in range(count)]


def test_the_matrix_is_segnos_with_error_correction_m_or_better() -> None:
    seen_masks = set()
    for url in urls(48):
        fast = qr_matrix(url)
        code = segno.make(url, error="m", micro=False)
        assert fast.rows == tuple(bytes(row) for row in code.matrix), url
        assert (fast.mask, fast.version, fast.error) == (code.mask, code.version, code.error)
        assert fast.error in "MQH" and fast.size == modules_for(url)
        seen_masks.add(fast.mask)
    assert len(seen_masks) >= 5  # the choice really varies


def test_runs_cover_exactly_the_dark_modules() -> None:
    matrix = qr_matrix(urls(1)[0])
    rebuilt = [bytearray(matrix.size) for _ in range(matrix.size)]
    for row, start, length in matrix.runs():
        assert length > 0 and all(v == 0 for v in rebuilt[row][start:start + length])
        rebuilt[row][start:start + length] = b"\x01" * length
    assert tuple(bytes(r) for r in rebuilt) == matrix.rows
