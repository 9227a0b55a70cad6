"""Every front door gets its long-lived parts from ``ledger.wiring``; these tests pin the
one that was once built separately and could disagree (the vault's object store)."""

from __future__ import annotations

from pathlib import Path

from ledger import wiring
from ledger.config import Settings
from ledger.images.store import FilesystemStore
from ledger.keystore import create_keys


def test_cli_and_server_vaults_use_the_configured_store(tmp_path: Path, db_url: str) -> None:
    settings = Settings(home=tmp_path, database_url=db_url)
    create_keys(settings.keys_dir)
    state = wiring.build(settings)
    try:
        served = state.context().vault
        scripted = wiring.context(settings).vault
        assert served.store is state.store
        for vault in (served, scripted):
            assert isinstance(vault.store, FilesystemStore)
            assert Path(vault.store.root) == settings.objects_dir
        assert served.master_key == scripted.master_key == state.keys.master_key
        assert state.release_desk().store is state.store
    finally:
        state.authorizer.close()
        state.engine.dispose()
