"""Key files: 0600, never overwritten, rotation keeps old keys for verification."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ledger.keystore import create_keys, load_keyring, rotate_signing_key


def test_keys_are_private_and_rotate(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    create_keys(keys)
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for f in keys.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    ring = load_keyring(keys)
    assert len(ring.pseudonym_key) == 32
    new = rotate_signing_key(keys)
    ring2 = load_keyring(keys)
    assert ring2.active.kid == new.kid != ring.active.kid
    assert set(ring2.signing) == {ring.active.kid, new.kid}
    with pytest.raises(FileExistsError):
        create_keys(keys)
