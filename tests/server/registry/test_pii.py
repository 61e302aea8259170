from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from server.registry.pii import PiiDecryptError, PiiKeyUnavailable, PiiVault, load_vault

NUMBER = "11010519491231002X"


def test_numbers_round_trip_and_ciphertexts_differ_each_time() -> None:
    vault = PiiVault.from_master(os.urandom(32))
    first, second = vault.encrypt(NUMBER), vault.encrypt(NUMBER)
    assert first != second and NUMBER not in first
    assert vault.decrypt(first) == vault.decrypt(second) == NUMBER


def test_digest_is_stable_per_key_and_differs_between_keys() -> None:
    one, two = PiiVault.from_master(os.urandom(32)), PiiVault.from_master(os.urandom(32))
    assert one.digest(NUMBER) == one.digest(NUMBER)
    assert one.digest(NUMBER) != two.digest(NUMBER)


def test_another_key_or_a_damaged_ciphertext_is_refused() -> None:
    one, two = PiiVault.from_master(os.urandom(32)), PiiVault.from_master(os.urandom(32))
    sealed = one.encrypt(NUMBER)
    with pytest.raises(PiiDecryptError):
        two.decrypt(sealed)
    key_id, _, body = sealed.partition(":")
    tampered = key_id + ":" + ("A" if body[0] != "A" else "B") + body[1:]
    with pytest.raises(PiiDecryptError):
        one.decrypt(tampered)


def test_a_key_is_generated_once_next_to_a_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'rentgate.db'}"
    first = load_vault(None, url)
    key_file = tmp_path / "db" / "pii.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_vault(None, url).digest(NUMBER) == first.digest(NUMBER)
    assert load_vault(str(key_file), "postgresql+psycopg://x/y").key_id == first.key_id


def test_postgresql_without_a_key_file_says_what_to_set() -> None:
    with pytest.raises(PiiKeyUnavailable, match="RENTGATE_PII_KEY_FILE"):
        load_vault(None, "postgresql+psycopg://localhost/rentgate")


def test_a_short_key_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "short.key"
    bad.write_text("c2hvcnQ=\n")
    with pytest.raises(PiiKeyUnavailable, match="32 bytes"):
        load_vault(str(bad), "sqlite:///x.db")


def test_keys_pii_writes_a_key_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rentgate.cli import main

    path = tmp_path / "pii.key"
    assert main(["keys", "pii", str(path)]) == 0
    vault = load_vault(str(path), "postgresql+psycopg://db/rentgate")
    assert vault.key_id in capsys.readouterr().err
    before = path.read_bytes()
    assert main(["keys", "pii", str(path)]) == 2
    assert path.read_bytes() == before


def test_a_number_in_any_other_spelling_than_the_parsers_is_refused_not_stored() -> None:
    """A caller that skipped parse_id_number would give one person a second
    digest (a second person); the vault refuses it instead."""
    vault = PiiVault.from_master(os.urandom(32))
    for spelling in (NUMBER.lower(), f" {NUMBER}", "４" + NUMBER[1:], "\u0664" + NUMBER[1:], NUMBER[:17]):
        with pytest.raises(ValueError, match="parse_id_number"):
            vault.digest(spelling)
        with pytest.raises(ValueError, match="parse_id_number"):
            vault.encrypt(spelling)
