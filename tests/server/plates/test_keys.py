"""The plate keyring: rotation keeps old plates valid, retiring a key
withdraws its plates, a damaged file is refused with the line named, and
the file is private."""

from __future__ import annotations

import stat
from datetime import date
from pathlib import Path

import pytest

from server.plates import keys
from server.plates.errors import PlateKeyUnavailable, TokenRejected
from server.plates.tokens import sign, verify
from tests.server.plates.conftest import english


@pytest.fixture(autouse=True)
def in_english(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests match the English wording; test_cli.py checks the
    Chinese default."""
    english(monkeypatch)


TODAY = date(2025, 3, 1)


def test_rotation_old_plates_verify_new_ones_use_the_new_key(tmp_path: Path) -> None:
    path = tmp_path / "plate-keys"
    assert keys.rotate(path) == "k1"
    first = keys.read_keyring(path)
    old_plate = sign(first.current_id, first.current_key, 1, None)

    assert keys.rotate(path) == "k2"
    second = keys.read_keyring(path)
    assert second.current_id == "k2" and list(second.keys) == ["k1", "k2"]
    assert second.keys["k1"] == first.keys["k1"]
    assert verify(old_plate, second.keys, TODAY).key_id == "k1"
    new_plate = sign(second.current_id, second.current_key, 2, None)
    assert new_plate.startswith("k2.")

    keys.retire(path, "k1")
    third = keys.read_keyring(path)
    assert list(third.keys) == ["k2"]
    with pytest.raises(TokenRejected) as caught:
        verify(old_plate, third.keys, TODAY)
    assert caught.value.reason == "unknown_key"
    assert verify(new_plate, third.keys, TODAY).plate_id == 2


def test_the_signing_key_cannot_be_retired_nor_an_unknown_one(tmp_path: Path) -> None:
    path = tmp_path / "plate-keys"
    keys.rotate(path)
    with pytest.raises(PlateKeyUnavailable, match="rotate first"):
        keys.retire(path, "k1")
    with pytest.raises(PlateKeyUnavailable, match="no key 'k7'"):
        keys.retire(path, "k7")


def test_files_are_mode_600(tmp_path: Path) -> None:
    path = tmp_path / "plate-keys"
    keys.rotate(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    keys.rotate(path)  # rewritten, private again
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    generated = keys.load_keyring(None, f"sqlite:///{tmp_path / 'db' / 'x.db'}")
    made = tmp_path / "db" / keys.GENERATED_KEYRING_NAME
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    # Loaded again, the same key (never regenerated over printed plates).
    assert keys.load_keyring(None, f"sqlite:///{tmp_path / 'db' / 'x.db'}") == generated


@pytest.mark.parametrize(("text", "problem"), [
    ("", "holds no key"),
    ("# only a comment\n", "holds no key"),
    ("k1\n", "line 1: expected"),
    ("k1 AAAA BBBB\n", "line 1: expected"),
    ("K1 " + "A" * 44 + "\n", "line 1: expected"),
    ("k1 not*base64\n", "line 1: the key is not base64"),
    ("k1 AAAA\n", "shorter than 16 bytes"),
    ("k1 " + "A" * 43 + "=\nk1 " + "B" * 43 + "=\n", "line 2: key id 'k1' appears twice"),
])
def test_a_malformed_keyring_is_refused_with_the_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "plate-keys"
    path.write_text(text)
    with pytest.raises(PlateKeyUnavailable, match=problem):
        keys.read_keyring(path)
    with pytest.raises(PlateKeyUnavailable):
        keys.rotate(path)  # never appends to a file it cannot read


def test_no_key_for_postgresql_or_memory_without_a_file(tmp_path: Path) -> None:
    with pytest.raises(PlateKeyUnavailable, match="RENTGATE_PLATE_KEY_FILE"):
        keys.load_keyring(None, "postgresql+psycopg://u@localhost/db")
    with pytest.raises(PlateKeyUnavailable, match="in-memory"):
        keys.load_keyring(None, "sqlite://")
    with pytest.raises(PlateKeyUnavailable, match="no such file|No such file"):
        keys.load_keyring(str(tmp_path / "missing"), "sqlite://")
